//! Blobs: existence checks and verified downloads (temp file + rename, resume with
//! `Range`).

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::RANGE;
use reqwest::Method;

use super::Repository;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::ByteProgress;
use crate::transport::retry::Retrier;
use crate::transport::{error_from_response, transport_error, Request};

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

impl Repository {
    /// HEAD a blob: `true` if present, `false` on 404.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        self.blob_exists_with(digest, &mut self.client.retrier())
            .await
    }

    async fn blob_exists_with(&self, digest: &Digest, retrier: &mut Retrier) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", self.name());
        let req = self.request(Method::HEAD, self.reference.blob_url(digest), false, &what);
        let resp = self.client.send_with(&req, retrier).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(error_from_response(resp, &what).await),
        }
    }

    /// Download a small blob into memory, verified against its digest. A dropped body is
    /// fetched again; so are wrong bytes, once.
    pub async fn fetch_blob_bytes(&self, digest: &Digest, limit: usize) -> Result<Bytes> {
        let what = format!("fetching blob {digest} from {}", self.name());
        let req = self.request(Method::GET, self.reference.blob_url(digest), false, &what);
        let mut retrier = self.client.retrier();
        let mut mismatches = 0;
        loop {
            let resp = self.client.send_with(&req, &mut retrier).await?;
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
    pub async fn fetch_blob(&self, digest: &Digest, dest: &Path) -> Result<FetchOutcome> {
        self.fetch_blob_counted(digest, dest, None).await
    }

    /// [`Repository::fetch_blob`], adding the bytes received to `progress`.
    pub async fn fetch_blob_counted(
        &self,
        digest: &Digest,
        dest: &Path,
        progress: Option<&ByteProgress>,
    ) -> Result<FetchOutcome> {
        let what = format!("fetching blob {digest} from {}", self.name());
        let mut tmp = TempDest::create(dest).map_err(|e| e.context(&what))?;
        let mut hasher = Hasher::new();
        let mut outcome = FetchOutcome::default();
        let mut retrier = self.client.retrier();
        // Set when the registry mishandled a Range request: no more of them.
        let mut use_range = true;
        let mut mismatches = 0;
        // Bytes received over all attempts: any increase is progress.
        let mut received = 0u64;
        loop {
            let before = received;
            let attempt = self
                .fetch_attempt(
                    digest,
                    &what,
                    use_range,
                    (&mut hasher, &mut received, progress),
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
        digest: &Digest,
        what: &str,
        use_range: bool,
        (hasher, received, progress): (&mut Hasher, &mut u64, Option<&ByteProgress>),
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
        let mut req: Request =
            self.request(Method::GET, self.reference.blob_url(digest), false, what);
        if offset > 0 {
            req = req.header(RANGE, &format!("bytes={offset}-"));
        }
        let resp = self
            .client
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
                        .with_cause(crate::error::Cause::BadRange),
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
                    .with_cause(crate::error::Cause::BadRange),
                ));
            }
            _ => return Err(Interrupted::Fatal(error_from_response(resp, what).await)),
        }
        let mut stream = resp.inner.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Interrupted::Retry(transport_error(what, &e)))?;
            hasher.update(&chunk);
            *received += chunk.len() as u64;
            if let Some(p) = progress {
                p.add(chunk.len() as u64);
            }
            tmp.file()
                .write_all(&chunk)
                .map_err(|e| Interrupted::Fatal(Error::io("writing", &tmp.path, &e)))?;
        }
        Ok(())
    }
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
