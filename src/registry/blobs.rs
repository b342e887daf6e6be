//! Blobs: existence checks, verified downloads (temp file + rename, resume with `Range`),
//! monolithic and streamed uploads, cross-repository mounts and copies.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, RANGE};
use reqwest::Method;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::reference::Reference;
use crate::transport::{error_from_response, transport_error, Body, Client, Request};

/// What to upload.
#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Bytes),
}

/// The result of a verified download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOutcome {
    pub size: u64,
    /// How many times the download was resumed with `Range` after a drop.
    pub resumed: u32,
}

fn with_digest_param(mut url: url::Url, digest: &Digest) -> url::Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// A temp file beside the destination that is removed unless persisted.
struct TempDest {
    path: PathBuf,
    file: Option<std::fs::File>,
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

    fn persist(mut self, dest: &Path) -> Result<()> {
        let f = self.file.take().expect("open temp file");
        f.sync_all()
            .map_err(|e| Error::io("syncing", &self.path, &e))?;
        drop(f);
        std::fs::rename(&self.path, dest).map_err(|e| Error::io("renaming download to", dest, &e))
    }
}

impl Drop for TempDest {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Client {
    /// HEAD a blob: `true` if present, `false` on 404.
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", reference.repository());
        let req = super::request(
            reference,
            Method::HEAD,
            reference.blob_url(digest),
            false,
            &what,
        );
        let resp = self.send(&req).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(error_from_response(resp, &what).await),
        }
    }

    /// Download a small blob into memory, verified against its digest.
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
        let resp = self.send(&req).await?;
        if resp.status().as_u16() != 200 {
            return Err(error_from_response(resp, &what).await);
        }
        let bytes = resp.bytes_limited(limit, &what).await?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("{what}: received bytes with digest {actual}"),
            ));
        }
        Ok(bytes)
    }

    /// Stream a blob to `dest`, verifying its sha256 on the way. The bytes go to a temp file
    /// in `dest`'s directory that is renamed to `dest` only after the digest matched, so
    /// `dest` never holds a partial or wrong file. A dropped connection is resumed with
    /// `Range` when the registry supports it, else the download restarts.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        dest: &Path,
    ) -> Result<FetchOutcome> {
        let what = format!("fetching blob {digest} from {}", reference.repository());
        let mut tmp = TempDest::create(dest).map_err(|e| e.context(&what))?;
        let mut hasher = Hasher::new();
        let mut resumed = 0u32;
        let policy = self.options().retry.clone();
        let start = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let offset = hasher.count();
            let mut req: Request = super::request(
                reference,
                Method::GET,
                reference.blob_url(digest),
                false,
                &what,
            );
            if offset > 0 {
                req = req.header(RANGE, &format!("bytes={offset}-"));
            }
            let result = async {
                let resp = self.send(&req).await?;
                let status = resp.status().as_u16();
                match status {
                    200 if offset > 0 => {
                        // The registry ignored Range: start over.
                        hasher = Hasher::new();
                        tmp.truncate()?;
                    }
                    200 | 206 => {}
                    _ => return Err(error_from_response(resp, &what).await),
                }
                if status == 206 {
                    resumed += 1;
                }
                let mut stream = resp.inner.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| transport_error(&what, &e))?;
                    hasher.update(&chunk);
                    tmp.file()
                        .write_all(&chunk)
                        .map_err(|e| Error::io("writing", dest, &e))?;
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) => match policy.delay(attempt, start.elapsed(), &e) {
                    Some(delay) => {
                        tracing::debug!(%what, attempt, error = %e, "download interrupted; resuming");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
        let size = hasher.count();
        let actual = hasher.finish();
        if actual != *digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!(
                    "{what}: received {size} bytes with digest {actual}; nothing was written to {}",
                    dest.display()
                ),
            ));
        }
        tmp.persist(dest)?;
        Ok(FetchOutcome { size, resumed })
    }

    /// Start an upload session: POST to `/blobs/uploads/`, returning the session URL.
    pub async fn start_upload(&self, reference: &Reference, what: &str) -> Result<url::Url> {
        let req = super::request(reference, Method::POST, reference.uploads_url(), true, what);
        let resp = self.send(&req).await?;
        if resp.status().as_u16() != 202 {
            return Err(error_from_response(resp, what).await);
        }
        let location = resp.header("location").ok_or_else(|| {
            Error::invalid_response(format!("{what}: upload session without a Location header"))
        })?;
        super::resolve_location(reference, location)
    }

    /// Upload a blob monolithically (POST, then PUT `?digest=` with the whole body), unless
    /// it exists already and `force` is false. Returns `true` if it was uploaded.
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
        let body = match source {
            BlobSource::Bytes(b) => Body::Bytes(b.clone()),
            BlobSource::File(path) => {
                let len = std::fs::metadata(path)
                    .map_err(|e| Error::io("reading", path, &e))?
                    .len();
                Body::File {
                    path: path.clone(),
                    len,
                }
            }
        };
        // A failed PUT cannot be re-sent to the same session: restart from POST.
        let policy = self.options().retry.clone();
        let start = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let result = async {
                let location = self.start_upload(reference, &what).await?;
                let req = super::request(
                    reference,
                    Method::PUT,
                    with_digest_param(location, digest).to_string(),
                    true,
                    &what,
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body.clone());
                let resp = self.send_no_retry(&req).await?;
                if resp.status().as_u16() != 201 {
                    return Err(error_from_response(resp, &what).await);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return Ok(true),
                Err(e) => match policy.delay(attempt, start.elapsed(), &e) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
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
        let location = self.start_upload(reference, what).await?;
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
        let policy = self.options().retry.clone();
        let start = std::time::Instant::now();
        let mut attempt = 1;
        loop {
            let result = async {
                let get = super::request(src, Method::GET, src.blob_url(digest), false, &what);
                let resp = self.send(&get).await?;
                if resp.status().as_u16() != 200 {
                    return Err(error_from_response(resp, &what).await);
                }
                let location = self.start_upload(dst, &what).await?;
                let put = super::request(
                    dst,
                    Method::PUT,
                    with_digest_param(location, digest).to_string(),
                    true,
                    &what,
                )
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, &size.to_string());
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
                Err(e) => match policy.delay(attempt, start.elapsed(), &e) {
                    Some(delay) => {
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

fn location_fallback(reference: &Reference, url: &str) -> Result<url::Url> {
    url::Url::parse(url).map_err(|e| Error::invalid_reference(format!("{reference}: {e}")))
}
