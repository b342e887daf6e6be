//! Blobs: existence checks, verified downloads (temp file + rename, resume with `Range`),
//! monolithic, chunked and streamed uploads, cross-repository mounts and copies.
//!
//! Every operation here retries as a whole with one [`Retrier`]: the requests it is made of
//! share the attempt count and time budget, so a failing registry sees a bounded number of
//! requests. Uploads never re-send to a session that failed: they start over from the POST.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::Method;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Reference;
use crate::transport::retry::Retrier;
use crate::transport::{error_from_response, transport_error, Body, Client, Request};

/// What to upload.
#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Bytes),
}

/// The result of a verified download.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    pub size: u64,
    /// How many times the download was resumed with `Range` after a drop.
    pub resumed: u32,
    /// How many times it started over from the first byte (the registry ignored `Range`, or
    /// the bytes did not match the digest once).
    pub restarted: u32,
    /// Failed attempts that were retried (drops, timeouts, 429/5xx answers).
    pub retries: u32,
}

/// Chunk size of a chunked upload when the registry does not give `OCI-Chunk-Min-Length`.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// Chunks are never made smaller than this when a registry refuses them as too large.
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;

fn with_digest_param(mut url: url::Url, digest: &Digest) -> url::Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// A temp file beside the destination, removed unless persisted (also when the download is
/// cancelled: dropping the future drops this guard).
struct TempDest {
    path: PathBuf,
    file: Option<std::fs::File>,
    persisted: bool,
}

impl TempDest {
    fn create(dest: &Path) -> Result<Self> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map_or_else(|| "blob".into(), |n| n.to_string_lossy().into_owned());
        let path = dir.join(format!(
            ".{name}.{}.{}.part",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("creating", &path, &e))?;
        Ok(Self {
            path,
            file: Some(file),
            persisted: false,
        })
    }

    fn file(&mut self) -> &mut std::fs::File {
        self.file.as_mut().expect("open temp file")
    }

    fn truncate(&mut self) -> Result<()> {
        let f = self.file();
        f.set_len(0)
            .and_then(|()| std::io::Seek::rewind(f))
            .map_err(|e| Error::io("truncating", &self.path, &e))
    }

    /// fsync the bytes, rename over `dest`, fsync the directory (the rename is durable).
    fn persist(mut self, dest: &Path) -> Result<()> {
        let f = self.file.take().expect("open temp file");
        f.sync_all()
            .map_err(|e| Error::io("syncing", &self.path, &e))?;
        drop(f);
        std::fs::rename(&self.path, dest)
            .map_err(|e| Error::io("renaming download to", dest, &e))?;
        self.persisted = true;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: not every file system lets a directory be opened and synced.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempDest {
    fn drop(&mut self) {
        if !self.persisted {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The first byte position of a `Content-Range: bytes <first>-<last>/<size>` header.
fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (first, _) = rest.split_once('-')?;
    first.trim().parse().ok()
}

/// Why one attempt of a download stopped.
enum Interrupted {
    /// Retry (after the retrier's delay), resuming from what was received.
    Retry(Error),
    /// The registry mishandled `Range`: retry from the first byte, without `Range`.
    BadRange(Error),
    /// Final.
    Fatal(Error),
}

impl Client {
    /// HEAD a blob: `true` if present, `false` on 404.
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        self.blob_exists_with(reference, digest, &mut self.retrier())
            .await
    }

    async fn blob_exists_with(
        &self,
        reference: &Reference,
        digest: &Digest,
        retrier: &mut Retrier,
    ) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", reference.repository());
        let req = super::request(
            reference,
            Method::HEAD,
            reference.blob_url(digest),
            false,
            &what,
        );
        let resp = self.send_with(&req, retrier).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(error_from_response(resp, &what).await),
        }
    }

    /// Download a small blob into memory, verified against its digest. A dropped body is
    /// fetched again; so are wrong bytes, once.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        digest: &Digest,
        limit: usize,
    ) -> Result<Bytes> {
        let what = format!("fetching blob {digest} from {}", reference.repository());
        let req = super::request(
            reference,
            Method::GET,
            reference.blob_url(digest),
            false,
            &what,
        );
        let mut retrier = self.retrier();
        let mut mismatches = 0;
        loop {
            let resp = self.send_with(&req, &mut retrier).await?;
            if resp.status().as_u16() != 200 {
                return Err(error_from_response(resp, &what).await);
            }
            let bytes = match resp.bytes_limited(limit, &what).await {
                Ok(b) => b,
                Err(e) => {
                    retrier.wait(e, &what).await?;
                    continue;
                }
            };
            let actual = Digest::of_bytes(&bytes);
            if actual == *digest {
                return Ok(bytes);
            }
            mismatches += 1;
            if mismatches > 1 {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("{what}: received bytes with digest {actual} (twice)"),
                ));
            }
            tracing::debug!(%what, %actual, "wrong bytes; fetching again");
        }
    }

    /// Stream a blob to `dest`, verifying its sha256 on the way. The bytes go to a temp file
    /// in `dest`'s directory that is renamed to `dest` only after the digest matched (and
    /// was synced to disk), so `dest` never holds a partial or wrong file, and a failed or
    /// cancelled download leaves nothing behind. A dropped or stalled connection is resumed
    /// with `Range` when the registry supports it, else the download restarts; bytes that do
    /// not match the digest are downloaded once more from the start before giving up.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        dest: &Path,
    ) -> Result<FetchOutcome> {
        let what = format!("fetching blob {digest} from {}", reference.repository());
        let mut tmp = TempDest::create(dest).map_err(|e| e.context(&what))?;
        let mut hasher = Hasher::new();
        let mut outcome = FetchOutcome::default();
        let mut retrier = self.retrier();
        // Set when the registry mishandled a Range request: no more of them.
        let mut use_range = true;
        let mut mismatches = 0;
        // Bytes received over all attempts: any increase is progress.
        let mut received = 0u64;
        loop {
            let before = received;
            let attempt = self
                .fetch_attempt(
                    reference,
                    digest,
                    &what,
                    use_range,
                    (&mut hasher, &mut received),
                    &mut tmp,
                    &mut outcome,
                    &mut retrier,
                )
                .await;
            match attempt {
                Ok(()) => {}
                Err(Interrupted::Fatal(e)) => return Err(e),
                Err(Interrupted::Retry(e)) => {
                    if received > before {
                        retrier.progress();
                    }
                    retrier.wait(e, &what).await?;
                    continue;
                }
                Err(Interrupted::BadRange(e)) => {
                    use_range = false;
                    retrier.wait(e, &what).await?;
                    continue;
                }
            }
            let size = hasher.count();
            let actual = std::mem::take(&mut hasher).finish();
            if actual == *digest {
                tmp.persist(dest)?;
                outcome.size = size;
                outcome.retries = retrier.retries();
                return Ok(outcome);
            }
            mismatches += 1;
            if mismatches > 1 {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!(
                        "{what}: received {size} bytes with digest {actual} (twice); nothing \
                         was written to {}",
                        dest.display()
                    ),
                ));
            }
            // Corrupted on the way, or a resumed part that did not fit: once more, whole.
            tracing::debug!(%what, %actual, "wrong bytes; downloading again from the start");
            tmp.truncate()?;
            outcome.restarted += 1;
            use_range = false;
        }
    }

    /// One GET of a download, from `hasher.count()` on.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_attempt(
        &self,
        reference: &Reference,
        digest: &Digest,
        what: &str,
        use_range: bool,
        (hasher, received): (&mut Hasher, &mut u64),
        tmp: &mut TempDest,
        outcome: &mut FetchOutcome,
        retrier: &mut Retrier,
    ) -> std::result::Result<(), Interrupted> {
        let mut offset = hasher.count();
        if offset > 0 && !use_range {
            *hasher = Hasher::new();
            tmp.truncate().map_err(Interrupted::Fatal)?;
            outcome.restarted += 1;
            offset = 0;
        }
        let mut req: Request = super::request(
            reference,
            Method::GET,
            reference.blob_url(digest),
            false,
            what,
        );
        if offset > 0 {
            req = req.header(RANGE, &format!("bytes={offset}-"));
        }
        let resp = self
            .send_with(&req, retrier)
            .await
            .map_err(Interrupted::Fatal)?;
        match resp.status().as_u16() {
            200 if offset > 0 => {
                // The registry ignored Range: start over with this answer.
                *hasher = Hasher::new();
                tmp.truncate().map_err(Interrupted::Fatal)?;
                outcome.restarted += 1;
            }
            200 => {}
            206 if offset > 0 => {
                let start = resp.header("content-range").and_then(content_range_start);
                if start != Some(offset) {
                    return Err(Interrupted::BadRange(
                        Error::invalid_response(format!(
                            "{what}: asked for bytes from {offset}, received Content-Range {:?}",
                            resp.header("content-range").unwrap_or("")
                        ))
                        .with_retryable(true),
                    ));
                }
                outcome.resumed += 1;
            }
            416 if offset > 0 => {
                return Err(Interrupted::BadRange(
                    Error::http(
                        ErrorKind::Registry,
                        format!("{what}: the registry refused the range from {offset}"),
                        416,
                        Vec::new(),
                    )
                    .with_retryable(true),
                ));
            }
            _ => return Err(Interrupted::Fatal(error_from_response(resp, what).await)),
        }
        let mut stream = resp.inner.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Interrupted::Retry(transport_error(what, &e)))?;
            hasher.update(&chunk);
            *received += chunk.len() as u64;
            tmp.file()
                .write_all(&chunk)
                .map_err(|e| Interrupted::Fatal(Error::io("writing", &tmp.path, &e)))?;
        }
        Ok(())
    }

    /// Start an upload session: POST to `/blobs/uploads/`, returning the session URL.
    pub async fn start_upload(&self, reference: &Reference, what: &str) -> Result<url::Url> {
        self.start_upload_with(reference, what, &mut self.retrier())
            .await
            .map(|(url, _)| url)
    }

    /// Start an upload session; also returns the registry's `OCI-Chunk-Min-Length`.
    pub async fn start_upload_with(
        &self,
        reference: &Reference,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<(url::Url, Option<u64>)> {
        let req = super::request(reference, Method::POST, reference.uploads_url(), true, what);
        let resp = self.send_with(&req, retrier).await?;
        if resp.status().as_u16() != 202 {
            return Err(error_from_response(resp, what).await);
        }
        let min_chunk = resp
            .header("oci-chunk-min-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0);
        let location = resp.header("location").ok_or_else(|| {
            Error::invalid_response(format!("{what}: upload session without a Location header"))
        })?;
        Ok((super::resolve_location(reference, location)?, min_chunk))
    }

    /// Upload a blob (POST, then PUT `?digest=` with the whole body), unless it exists
    /// already and `force` is false. Returns `true` if it was uploaded.
    ///
    /// A failed upload starts over from the POST (a session is never re-used after an
    /// error); when the reply to the PUT was lost, a HEAD first checks whether the blob
    /// landed anyway. A registry that caps request sizes (413 to the PUT) gets the blob in
    /// chunks (PATCH with `Content-Range`, then an empty PUT), of `OCI-Chunk-Min-Length`
    /// bytes when it says so, else [`DEFAULT_CHUNK_SIZE`], halved while it still says 413.
    pub async fn upload_blob(
        &self,
        reference: &Reference,
        source: &BlobSource,
        digest: &Digest,
        force: bool,
    ) -> Result<bool> {
        if !force && self.blob_exists(reference, digest).await? {
            return Ok(false);
        }
        let what = format!("uploading blob {digest} to {}", reference.repository());
        let (body, len) = match source {
            BlobSource::Bytes(b) => (Body::Bytes(b.clone()), b.len() as u64),
            BlobSource::File(path) => {
                let len = std::fs::metadata(path)
                    .map_err(|e| Error::io("reading", path, &e))?
                    .len();
                (
                    Body::File {
                        path: path.clone(),
                        len,
                    },
                    len,
                )
            }
        };
        let mut retrier = self.retrier();
        // Set once the registry refused the whole blob in one request.
        let mut chunk: Option<u64> = None;
        loop {
            let result = match chunk {
                None => {
                    self.put_monolithic(reference, &body, digest, &what, &mut retrier)
                        .await
                }
                Some(size) => {
                    self.put_chunked(reference, source, len, digest, size, &what, &mut retrier)
                        .await
                }
            };
            let err = match result {
                Ok(()) => return Ok(true),
                Err(e) => e,
            };
            if err.status() == Some(413) {
                let next = match chunk {
                    None => DEFAULT_CHUNK_SIZE,
                    Some(size) if size / 2 >= MIN_CHUNK_SIZE => size / 2,
                    Some(_) => {
                        return Err(err.context(format!(
                            "the registry refuses even {MIN_CHUNK_SIZE}-byte chunks"
                        )))
                    }
                };
                tracing::debug!(%what, next, "request too large; uploading in chunks");
                chunk = Some(next);
                continue;
            }
            if err.is_retryable()
                && matches!(self.blob_exists_once(reference, digest).await, Ok(true))
            {
                // The registry took the blob; only its answer was lost.
                return Ok(true);
            }
            retrier.wait(err, &what).await?;
        }
    }

    /// One HEAD, no retries: after a failed upload, did the blob land anyway?
    async fn blob_exists_once(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", reference.repository());
        let req = super::request(
            reference,
            Method::HEAD,
            reference.blob_url(digest),
            false,
            &what,
        );
        let resp = self.send_no_retry(&req).await?;
        Ok(resp.status().as_u16() == 200)
    }

    /// POST, then one PUT with the whole blob.
    async fn put_monolithic(
        &self,
        reference: &Reference,
        body: &Body,
        digest: &Digest,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<()> {
        let (location, _) = self.start_upload_with(reference, what, retrier).await?;
        let req = super::request(
            reference,
            Method::PUT,
            with_digest_param(location, digest).to_string(),
            true,
            what,
        )
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(body.clone());
        let resp = self.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(())
    }

    /// POST, PATCH chunks with `Content-Range`, then PUT `?digest=` with no body.
    #[allow(clippy::too_many_arguments)]
    async fn put_chunked(
        &self,
        reference: &Reference,
        source: &BlobSource,
        len: u64,
        digest: &Digest,
        chunk: u64,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<()> {
        let (mut location, min_chunk) = self.start_upload_with(reference, what, retrier).await?;
        let chunk = match min_chunk {
            Some(min) => chunk.min(min.max(MIN_CHUNK_SIZE)).max(min),
            None => chunk,
        };
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.min(len - offset);
            let bytes = read_range(source, offset, n).await?;
            let req = super::request(reference, Method::PATCH, location.to_string(), true, what)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    &format!("{offset}-{}", offset + n - 1),
                )
                .body(Body::Bytes(bytes));
            let resp = self.send_no_retry(&req).await?;
            if resp.status().as_u16() != 202 {
                return Err(error_from_response(resp, what)
                    .await
                    .context(format!("chunk at {offset} of {len} bytes")));
            }
            let next = resp.header("location").map(str::to_string);
            drop(resp);
            if let Some(l) = next {
                location = super::resolve_location(reference, &l)?;
            }
            offset += n;
        }
        let req = super::request(
            reference,
            Method::PUT,
            with_digest_param(location, digest).to_string(),
            true,
            what,
        )
        .header(CONTENT_TYPE, "application/octet-stream");
        let resp = self.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(())
    }

    /// Upload a stream whose digest is known only at its end: POST, one streamed PATCH, then
    /// PUT `?digest=`. `finish` gives the digest once the stream is complete. Not retried
    /// here: the caller re-creates the stream (tarballs are reproducible).
    pub async fn upload_stream<F>(
        &self,
        reference: &Reference,
        body: reqwest::Body,
        finish: F,
        what: &str,
    ) -> Result<Digest>
    where
        F: std::future::Future<Output = Result<Digest>>,
    {
        self.upload_stream_with(reference, body, finish, what, &mut self.retrier())
            .await
    }

    /// [`Client::upload_stream`] whose POST retries count in the caller's `retrier`.
    pub async fn upload_stream_with<F>(
        &self,
        reference: &Reference,
        body: reqwest::Body,
        finish: F,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Digest>
    where
        F: std::future::Future<Output = Result<Digest>>,
    {
        let (location, _) = self.start_upload_with(reference, what, retrier).await?;
        self.upload_stream_to(reference, location, body, finish, what)
            .await
    }

    /// The PATCH and PUT of [`Client::upload_stream`], into a session opened already.
    pub async fn upload_stream_to<F>(
        &self,
        reference: &Reference,
        location: url::Url,
        body: reqwest::Body,
        finish: F,
        what: &str,
    ) -> Result<Digest>
    where
        F: std::future::Future<Output = Result<Digest>>,
    {
        let mut req = super::request(reference, Method::PATCH, location.to_string(), true, what)
            .header(CONTENT_TYPE, "application/octet-stream");
        req.body = Body::Empty;
        let resp = self.send_stream(&req, body).await?;
        if resp.status().as_u16() != 202 {
            return Err(error_from_response(resp, what).await);
        }
        let location = resp.header("location").map(str::to_string);
        drop(resp);
        let digest = finish.await?;
        let next = match location {
            Some(l) => super::resolve_location(reference, &l)?,
            None => location_fallback(reference, &req.url)?,
        };
        let req = super::request(
            reference,
            Method::PUT,
            with_digest_param(next, &digest).to_string(),
            true,
            what,
        );
        let resp = self.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(digest)
    }

    /// Try a cross-repository mount of `digest` from `from` into `reference` (same
    /// registry). Returns `true` if the registry mounted it.
    pub async fn mount_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        from: &Reference,
    ) -> Result<bool> {
        let what = format!(
            "mounting blob {digest} from {} into {}",
            from.repository(),
            reference.repository()
        );
        let mut url = url::Url::parse(&reference.uploads_url())
            .map_err(|e| Error::invalid_reference(format!("{reference}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", &from.name);
        let mut req = super::request(reference, Method::POST, url.to_string(), true, &what);
        req.scopes
            .push(crate::transport::auth::Scope::pull(&from.name));
        let resp = self.send(&req).await?;
        match resp.status().as_u16() {
            201 => Ok(true),
            202 => {
                // The registry opened an ordinary upload session instead: close it.
                if let Some(loc) = resp.header("location").map(str::to_string) {
                    drop(resp);
                    if let Ok(u) = super::resolve_location(reference, &loc) {
                        let del =
                            super::request(reference, Method::DELETE, u.to_string(), true, &what);
                        let _ = self.send_no_retry(&del).await;
                    }
                }
                Ok(false)
            }
            _ => Err(error_from_response(resp, &what).await),
        }
    }

    /// Copy a blob from `src` to `dst`: mount when both are on one registry, else stream the
    /// download straight into a monolithic upload (the registry verifies the digest).
    pub async fn copy_blob(
        &self,
        src: &Reference,
        dst: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        if src.domain == dst.domain
            && src.scheme == dst.scheme
            && self.mount_blob(dst, digest, src).await?
        {
            return Ok(());
        }
        let what = format!(
            "copying blob {digest} from {} to {}",
            src.repository(),
            dst.repository()
        );
        let mut retrier = self.retrier();
        loop {
            let result = async {
                let get = super::request(src, Method::GET, src.blob_url(digest), false, &what);
                let resp = self.send_with(&get, &mut retrier).await?;
                if resp.status().as_u16() != 200 {
                    return Err(error_from_response(resp, &what).await);
                }
                let (location, _) = self.start_upload_with(dst, &what, &mut retrier).await?;
                let put = super::request(
                    dst,
                    Method::PUT,
                    with_digest_param(location, digest).to_string(),
                    true,
                    &what,
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, &size.to_string());
                let body = reqwest::Body::wrap_stream(resp.inner.bytes_stream());
                let resp = self.send_stream(&put, body).await?;
                if resp.status().as_u16() != 201 {
                    return Err(error_from_response(resp, &what).await);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => retrier.wait(e, &what).await?,
            }
        }
    }
}

/// `n` bytes of `source` from `offset`.
async fn read_range(source: &BlobSource, offset: u64, n: u64) -> Result<Bytes> {
    match source {
        BlobSource::Bytes(b) => Ok(b.slice(offset as usize..(offset + n) as usize)),
        BlobSource::File(path) => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut f = tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::io("opening", path, &e))?;
            f.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| Error::io("reading", path, &e))?;
            let mut buf = vec![0u8; n as usize];
            f.read_exact(&mut buf)
                .await
                .map_err(|e| Error::io("reading", path, &e))?;
            Ok(Bytes::from(buf))
        }
    }
}

fn location_fallback(reference: &Reference, url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|e| Error::invalid_reference(format!("{reference}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::content_range_start;

    #[test]
    fn content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
