//! Blob uploads: what can be uploaded ([`BlobSource`], or any [`UploadSource`] that can
//! produce its bytes again from an offset, such as a reproducible tarball), and the verbs
//! that upload it through one resumable session ([`super::session`]).

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use reqwest::Method;

use super::session::Mode;
use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::transport::file_stream;
use crate::transport::retry::Retrier;

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

/// The bytes of an upload from some offset on, and the digest of the whole once they have
/// all been produced.
pub struct Opened {
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
    pub finish: BoxFuture<'static, Result<Digest>>,
}

/// Something whose bytes can be produced again from any offset: an upload interrupted at
/// byte N continues from N (the registry keeps what it has).
pub trait UploadSource: Send + Sync {
    /// The length, when known before the bytes are produced.
    fn size(&self) -> Option<u64>;
    /// The digest, when known before the bytes are produced.
    fn digest(&self) -> Option<Digest>;
    /// The bytes from `offset` on.
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened>>;
    /// A local failure while producing the bytes (an unreadable file): final, never retried.
    fn failure(&self) -> Option<Error> {
        None
    }
}

/// A [`BlobSource`] with its digest.
struct Known<'a> {
    source: &'a BlobSource,
    digest: Digest,
    len: u64,
}

impl UploadSource for Known<'_> {
    fn size(&self) -> Option<u64> {
        Some(self.len)
    }

    fn digest(&self) -> Option<Digest> {
        Some(self.digest.clone())
    }

    fn open(&self, offset: u64) -> BoxFuture<'_, Result<Opened>> {
        let digest = self.digest.clone();
        let finish = futures_util::future::ready(Ok(digest)).boxed();
        match self.source {
            BlobSource::Bytes(b) => {
                let rest = b.slice((offset as usize).min(b.len())..);
                let stream = futures_util::stream::iter([Ok(rest)]).boxed();
                futures_util::future::ready(Ok(Opened { stream, finish })).boxed()
            }
            BlobSource::File(path) => async move {
                let stream = file_stream(path, offset, self.len.saturating_sub(offset)).await?;
                Ok(Opened {
                    stream: stream.boxed(),
                    finish,
                })
            }
            .boxed(),
        }
    }
}

impl BlobSource {
    /// The length of the blob; for a file, checked before any request is sent.
    pub fn checked_size(&self) -> Result<u64> {
        match self {
            BlobSource::Bytes(b) => Ok(b.len() as u64),
            BlobSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| Error::io("reading", path, &e))?;
                if !meta.is_file() {
                    return Err(Error::new(
                        crate::ErrorKind::Io,
                        format!("{} is not a file", path.display()),
                    ));
                }
                std::fs::File::open(path).map_err(|e| Error::io("opening", path, &e))?;
                Ok(meta.len())
            }
        }
    }
}

impl Repository {
    /// Start an upload session: POST to `/blobs/uploads/`, returning the session URL.
    pub async fn start_upload(&self, what: &str) -> Result<url::Url> {
        self.open_session(what, &mut self.client.retrier())
            .await
            .map(|s| s.location)
    }

    /// Upload a blob, unless it exists already and `force` is false. Returns `true` if it
    /// was uploaded. A local file is checked (exists, readable) before any request.
    ///
    /// One session takes the blob (POST, then one PUT `?digest=` with the whole body); see
    /// [`Repository::upload`] for what happens when something goes wrong.
    pub async fn upload_blob(
        &self,
        source: &BlobSource,
        digest: &Digest,
        force: bool,
    ) -> Result<bool> {
        let len = source.checked_size()?;
        if !force && self.blob_exists(digest).await? {
            return Ok(false);
        }
        let known = Known {
            source,
            digest: digest.clone(),
            len,
        };
        self.upload(&known, Mode::Monolithic).await?;
        Ok(true)
    }

    /// Upload `source` in one session and return its digest: monolithically (one PUT) when
    /// its digest is known and `mode` says so, else streamed (one PATCH of the whole, then
    /// PUT `?digest=`). A 429/5xx/408 answer is retried on the same session after the wait;
    /// a reset or lost reply asks the session how far it got (`GET`, `Range: 0-N`) and
    /// continues from there; a session the registry no longer knows (404,
    /// `BLOB_UPLOAD_UNKNOWN`) starts again from a new POST. A registry that caps request
    /// sizes (413) or refuses streamed bodies gets chunks (PATCH with `Content-Range`) of
    /// `OCI-Chunk-Min-Length` bytes or [`DEFAULT_CHUNK_SIZE`], halved while it says 413.
    pub async fn upload_source(&self, source: &dyn UploadSource) -> Result<Digest> {
        let mode = if source.digest().is_some() && source.size().is_some() {
            Mode::Monolithic
        } else {
            Mode::Stream
        };
        self.upload(source, mode).await
    }

    /// HEAD without retries after a failed upload: did the blob land anyway?
    pub(crate) async fn blob_landed(&self, digest: &Digest, retrier: &mut Retrier) -> bool {
        let what = format!("checking blob {digest} in {}", self.name());
        let req = self.request(Method::HEAD, self.reference.blob_url(digest), false, &what);
        self.client
            .send_with(&req, retrier)
            .await
            .is_ok_and(|resp| resp.status().is_success())
    }
}
