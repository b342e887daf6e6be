//! Upload sessions: monolithic (POST, PUT), chunked (PATCH with `Content-Range`) and
//! streamed (one PATCH of a body whose digest is known only at its end) uploads.

use std::path::PathBuf;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;

use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::transport::retry::Retrier;
use crate::transport::{error_from_response, Body};

/// What to upload.
#[derive(Clone, Debug)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Bytes),
}

/// Chunk size of a chunked upload when the registry does not give `OCI-Chunk-Min-Length`.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// Chunks are never made smaller than this when a registry refuses them as too large.
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;

pub(crate) fn with_digest_param(mut url: url::Url, digest: &Digest) -> url::Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

impl Repository {
    /// Start an upload session: POST to `/blobs/uploads/`, returning the session URL.
    pub async fn start_upload(&self, what: &str) -> Result<url::Url> {
        self.start_upload_with(what, &mut self.client.retrier())
            .await
            .map(|(url, _)| url)
    }

    /// Start an upload session; also returns the registry's `OCI-Chunk-Min-Length`.
    pub(crate) async fn start_upload_with(
        &self,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<(url::Url, Option<u64>)> {
        let req = self.request(Method::POST, self.reference.uploads_url(), true, what);
        let resp = self.client.send_with(&req, retrier).await?;
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
        Ok((self.resolve(location)?, min_chunk))
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
        source: &BlobSource,
        digest: &Digest,
        force: bool,
    ) -> Result<bool> {
        if !force && self.blob_exists(digest).await? {
            return Ok(false);
        }
        let what = format!("uploading blob {digest} to {}", self.name());
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
        let mut retrier = self.client.retrier();
        // Set once the registry refused the whole blob in one request.
        let mut chunk: Option<u64> = None;
        loop {
            let result = match chunk {
                None => {
                    self.put_monolithic(&body, digest, &what, &mut retrier)
                        .await
                }
                Some(size) => {
                    self.put_chunked(source, len, digest, size, &what, &mut retrier)
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
            if err.is_retryable() && matches!(self.blob_exists_once(digest).await, Ok(true)) {
                // The registry took the blob; only its answer was lost.
                return Ok(true);
            }
            retrier.wait(err, &what).await?;
        }
    }

    /// One HEAD, no retries: after a failed upload, did the blob land anyway?
    async fn blob_exists_once(&self, digest: &Digest) -> Result<bool> {
        let what = format!("checking blob {digest} in {}", self.name());
        let req = self.request(Method::HEAD, self.reference.blob_url(digest), false, &what);
        let resp = self.client.send_no_retry(&req).await?;
        Ok(resp.status().as_u16() == 200)
    }

    /// POST, then one PUT with the whole blob.
    async fn put_monolithic(
        &self,
        body: &Body,
        digest: &Digest,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<()> {
        let (location, _) = self.start_upload_with(what, retrier).await?;
        let req = self
            .request(
                Method::PUT,
                with_digest_param(location, digest).to_string(),
                true,
                what,
            )
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body.clone());
        let resp = self.client.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(())
    }

    /// POST, PATCH chunks with `Content-Range`, then PUT `?digest=` with no body.
    #[allow(clippy::too_many_arguments)]
    async fn put_chunked(
        &self,
        source: &BlobSource,
        len: u64,
        digest: &Digest,
        chunk: u64,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<()> {
        let (mut location, min_chunk) = self.start_upload_with(what, retrier).await?;
        let chunk = match min_chunk {
            Some(min) => chunk.min(min.max(MIN_CHUNK_SIZE)).max(min),
            None => chunk,
        };
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.min(len - offset);
            let bytes = read_range(source, offset, n).await?;
            let req = self
                .request(Method::PATCH, location.to_string(), true, what)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    &format!("{offset}-{}", offset + n - 1),
                )
                .body(Body::Bytes(bytes));
            let resp = self.client.send_no_retry(&req).await?;
            if resp.status().as_u16() != 202 {
                return Err(error_from_response(resp, what)
                    .await
                    .context(format!("chunk at {offset} of {len} bytes")));
            }
            let next = resp.header("location").map(str::to_string);
            drop(resp);
            if let Some(l) = next {
                location = self.resolve(&l)?;
            }
            offset += n;
        }
        let req = self
            .request(
                Method::PUT,
                with_digest_param(location, digest).to_string(),
                true,
                what,
            )
            .header(CONTENT_TYPE, "application/octet-stream");
        let resp = self.client.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(())
    }

    /// Upload a stream whose digest is known only at its end into a session opened
    /// already: one streamed PATCH, then PUT `?digest=`. `finish` gives the digest once the
    /// stream is complete. Not retried here: the caller re-creates the stream (tarballs are
    /// reproducible).
    pub(crate) async fn upload_stream_to<F>(
        &self,
        location: url::Url,
        body: reqwest::Body,
        finish: F,
        what: &str,
    ) -> Result<Digest>
    where
        F: std::future::Future<Output = Result<Digest>>,
    {
        let mut req = self
            .request(Method::PATCH, location.to_string(), true, what)
            .header(CONTENT_TYPE, "application/octet-stream");
        req.body = Body::Empty;
        let resp = self.client.send_stream(&req, body).await?;
        if resp.status().as_u16() != 202 {
            return Err(error_from_response(resp, what).await);
        }
        let location = resp.header("location").map(str::to_string);
        drop(resp);
        let digest = finish.await?;
        let next = match location {
            Some(l) => self.resolve(&l)?,
            None => location_fallback(&self.reference, &req.url)?,
        };
        let req = self.request(
            Method::PUT,
            with_digest_param(next, &digest).to_string(),
            true,
            what,
        );
        let resp = self.client.send_no_retry(&req).await?;
        if resp.status().as_u16() != 201 {
            return Err(error_from_response(resp, what).await);
        }
        Ok(digest)
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
