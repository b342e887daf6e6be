//! One resumable upload session (distribution spec "pushing blobs"): POST opens it; the
//! bytes go as one PUT (monolithic), one streamed PATCH or chunked PATCHes with
//! `Content-Range`; PUT `?digest=` closes it.
//!
//! Failures are handled in [`Repository::upload`] with the operation's one [`Retrier`]: a
//! 429/5xx/408 answer is retried on the same session after the wait; after an interruption
//! (reset, timeout, lost reply) the session is asked for its offset and the upload continues
//! from there; only a session the registry no longer knows starts again from a POST. A 413
//! or a refused streamed body changes the mode (to chunks, halved while 413), not the
//! session.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::Method;

use super::uploads::{Opened, UploadSource, DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE};
use super::Repository;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, RegistryCode, Result};
use crate::transport::retry::{is_retryable_status, is_throttle_status, Retrier};
use crate::transport::{error_from_response, Body, OnceBody, Request, Response};

/// How the bytes go to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One PUT `?digest=` with the whole body (digest known in advance).
    Monolithic,
    /// One PATCH with the rest of the body as a stream, then PUT `?digest=`.
    Stream,
    /// PATCHes of this many bytes with `Content-Range`, then PUT `?digest=`.
    Chunked(u64),
}

/// An open session.
#[derive(Debug)]
pub struct Session {
    pub location: url::Url,
    /// Bytes the registry holds.
    pub offset: u64,
    /// `OCI-Chunk-Min-Length`.
    pub min_chunk: Option<u64>,
}

/// Which request of the session failed (the fallbacks depend on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Patch,
    Put,
    Other,
}

/// The state of one upload across attempts.
struct Upload {
    mode: Mode,
    session: Option<Session>,
    stage: Stage,
    /// The digest, once known (in advance, or at the end of a stream).
    digest: Option<Digest>,
}

/// An upload-session request answered 404 (bare, `BLOB_UPLOAD_UNKNOWN`, or distribution's
/// `BLOB_UPLOAD_INVALID` for a session URL it can no longer continue) is a lost session.
fn session_error(mut err: Error) -> Error {
    if err.status() == Some(404) && !err.has_code("BLOB_UPLOAD_UNKNOWN") {
        let mut codes = err.codes().to_vec();
        codes.push(RegistryCode {
            code: "BLOB_UPLOAD_UNKNOWN".into(),
            message: String::new(),
        });
        err = Error::http(err.kind(), err.message().to_string(), 404, codes);
    }
    err
}

fn session_lost(err: &Error) -> bool {
    err.has_code("BLOB_UPLOAD_UNKNOWN")
}

fn with_digest_param(mut url: url::Url, digest: &Digest) -> url::Url {
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// The bytes a session holds by its `Range: 0-N` (or `bytes=0-N`) header: N + 1. Registries
/// (distribution among them) say `0-0` for an empty session too, so `0-0` counts as none:
/// at worst one byte is sent again and refused.
fn range_end(value: &str) -> Option<u64> {
    let v = value.trim().trim_start_matches("bytes=");
    let (_, end) = v.split_once('-')?;
    match end.trim().parse::<u64>().ok()? {
        0 => Some(0),
        n => Some(n + 1),
    }
}

impl Upload {
    /// The mode to switch to after `err`, if it is one that a mode change answers.
    fn fallback(&self, err: &Error) -> Option<Result<Mode>> {
        let status = err.status()?;
        let refused_stream = matches!(status, 400 | 405 | 411 | 416 | 501);
        match (self.mode, self.stage) {
            (Mode::Monolithic | Mode::Stream, Stage::Patch | Stage::Put) if status == 413 => {
                Some(Ok(Mode::Chunked(DEFAULT_CHUNK_SIZE)))
            }
            (Mode::Stream, Stage::Patch) if refused_stream => {
                Some(Ok(Mode::Chunked(DEFAULT_CHUNK_SIZE)))
            }
            (Mode::Chunked(n), Stage::Patch) if status == 413 => Some(if n / 2 >= MIN_CHUNK_SIZE {
                Ok(Mode::Chunked(n / 2))
            } else {
                Err(err.clone().context(format!(
                    "the registry refuses even {MIN_CHUNK_SIZE}-byte chunks"
                )))
            }),
            _ => None,
        }
    }
}

impl Repository {
    /// POST a new upload session.
    pub(crate) async fn open_session(&self, what: &str, retrier: &mut Retrier) -> Result<Session> {
        let req = self.request(Method::POST, self.reference.uploads_url(), true, what);
        let resp = self.client.send_with(&req, retrier).await?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, what).await);
        }
        let min_chunk = resp
            .header("oci-chunk-min-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0);
        let location = resp.header("location").ok_or_else(|| {
            Error::invalid_response(format!("{what}: upload session without a Location header"))
        })?;
        Ok(Session {
            location: self.resolve(location)?,
            offset: 0,
            min_chunk,
        })
    }

    /// Upload `source` in `mode` through one session (resumed, or restarted when lost; see
    /// the module documentation). Returns the digest.
    pub(crate) async fn upload(&self, source: &dyn UploadSource, mode: Mode) -> Result<Digest> {
        let what = match source.digest() {
            Some(d) => format!("uploading blob {d} to {}", self.name()),
            None => format!("uploading a blob to {}", self.name()),
        };
        let mut retrier = self.client.retrier();
        let mut up = Upload {
            mode,
            session: None,
            stage: Stage::Other,
            digest: source.digest(),
        };
        loop {
            if up.session.is_none() {
                up.stage = Stage::Other;
                up.session = Some(self.open_session(&what, &mut retrier).await?);
            }
            let err = match self.step(source, &mut up, &what, &mut retrier).await {
                Ok(digest) => return Ok(digest),
                Err(e) => e,
            };
            if let Some(local) = source.failure() {
                return Err(local);
            }
            if let Some(next) = up.fallback(&err) {
                up.mode = next?;
                tracing::info!(%what, error = %err, mode = ?up.mode, "changing upload mode");
                up.session = None;
                continue;
            }
            let answered = err.status().filter(|s| is_retryable_status(*s));
            let lost = session_lost(&err);
            retrier.wait(err, &what).await?;
            if lost {
                up.session = None;
            } else if !answered.is_some_and(|s| is_throttle_status(s) || s == 408) {
                // Interrupted, or a 5xx: the registry may hold part of what was sent.
                if let Some(done) = self.resync(&mut up, &what, &mut retrier).await? {
                    return Ok(done);
                }
            }
        }
    }

    /// Send what the session lacks, in the current mode, and close it.
    async fn step(
        &self,
        source: &dyn UploadSource,
        up: &mut Upload,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Digest> {
        let offset = up.session.as_ref().map_or(0, |s| s.offset);
        let mode = match (up.mode, source.size()) {
            (Mode::Monolithic, Some(len)) if offset > 0 => Mode::Chunked(len - offset),
            (m, _) => m,
        };
        let opened = source.open(offset).await?;
        let digest = match mode {
            Mode::Monolithic => {
                let digest = up.digest.clone().ok_or_else(|| {
                    Error::invalid_input(format!("{what}: a monolithic upload needs the digest"))
                })?;
                let body = Body::Stream(OnceBody::new(reqwest::Body::wrap_stream(opened.stream)));
                return self
                    .close(up, &digest, body, source.size(), what, retrier)
                    .await;
            }
            Mode::Stream => self.patch_stream(up, opened, what, retrier).await?,
            Mode::Chunked(n) => self.patch_chunks(up, opened, n, what, retrier).await?,
        };
        up.digest = Some(digest.clone());
        self.close(up, &digest, Body::Empty, Some(0), what, retrier)
            .await
    }

    /// One session request (PATCH, PUT or GET): its success status, or the error.
    async fn session_send(
        &self,
        up: &mut Upload,
        req: Request,
        stage: Stage,
        retrier: &mut Retrier,
    ) -> Result<Response> {
        up.stage = stage;
        let resp = self.client.send_with(&req, retrier).await?;
        if !resp.status().is_success() {
            return Err(session_error(error_from_response(resp, &req.what).await));
        }
        if let (Some(s), Some(l)) = (up.session.as_mut(), resp.header("location")) {
            s.location = self.resolve(l)?;
        }
        Ok(resp)
    }

    fn session_request(&self, up: &Upload, method: Method, what: &str) -> Request {
        let url = up.session.as_ref().expect("open session").location.clone();
        let mut req = self.request(method, url.to_string(), true, what);
        req.idempotent = false;
        req
    }

    /// One streamed PATCH of the rest, then the digest the stream ended with.
    async fn patch_stream(
        &self,
        up: &mut Upload,
        opened: Opened,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Digest> {
        let body = OnceBody::new(reqwest::Body::wrap_stream(opened.stream));
        let req = self
            .session_request(up, Method::PATCH, what)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(Body::Stream(body));
        let resp = self.session_send(up, req, Stage::Patch, retrier).await?;
        let end = resp.header("range").and_then(range_end);
        drop(resp);
        let digest = opened.finish.await?;
        if let (Some(s), Some(end)) = (up.session.as_mut(), end) {
            s.offset = end;
        }
        retrier.progress();
        Ok(digest)
    }

    /// PATCHes of `chunk` bytes with `Content-Range`, then the digest.
    async fn patch_chunks(
        &self,
        up: &mut Upload,
        opened: Opened,
        chunk: u64,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Digest> {
        let min = up.session.as_ref().and_then(|s| s.min_chunk);
        let chunk = match min {
            Some(min) => chunk.min(min.max(MIN_CHUNK_SIZE)).max(min),
            None => chunk,
        };
        let Opened { stream, finish } = opened;
        let mut stream = stream.fuse();
        let mut buf = BytesMut::new();
        loop {
            let bytes = next_chunk(&mut stream, &mut buf, chunk, what).await?;
            if bytes.is_empty() {
                break;
            }
            let offset = up.session.as_ref().map_or(0, |s| s.offset);
            let n = bytes.len() as u64;
            let req = self
                .session_request(up, Method::PATCH, &format!("{what} (chunk at {offset})"))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_RANGE, &format!("{offset}-{}", offset + n - 1))
                .body(Body::Bytes(bytes));
            drop(self.session_send(up, req, Stage::Patch, retrier).await?);
            if let Some(s) = up.session.as_mut() {
                s.offset += n;
            }
            retrier.progress();
        }
        finish.await
    }

    /// PUT `?digest=` (with `body`, the rest of a monolithic upload, or nothing), checking
    /// the digest the registry says it stored.
    async fn close(
        &self,
        up: &mut Upload,
        digest: &Digest,
        body: Body,
        len: Option<u64>,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Digest> {
        let url = up.session.as_ref().expect("open session").location.clone();
        let mut req = self.request(
            Method::PUT,
            with_digest_param(url, digest).to_string(),
            true,
            what,
        );
        req.idempotent = false;
        req = req.header(CONTENT_TYPE, "application/octet-stream");
        if let (Some(len), Body::Stream(_)) = (len, &body) {
            req = req.header(CONTENT_LENGTH, &len.to_string());
        }
        let resp = self
            .session_send(up, req.body(body), Stage::Put, retrier)
            .await?;
        if let Some(stored) = resp.header("docker-content-digest") {
            if stored.trim() != digest.to_string() {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("{what}: the registry stored {stored}, not {digest}"),
                ));
            }
        }
        Ok(digest.clone())
    }

    /// After an interruption: ask the session how much it holds (`GET`, `Range: 0-N`).
    /// Returns the digest when the session is gone because the blob landed (a lost reply
    /// to the closing PUT); drops the session when it is gone otherwise.
    async fn resync(
        &self,
        up: &mut Upload,
        what: &str,
        retrier: &mut Retrier,
    ) -> Result<Option<Digest>> {
        if up.session.is_none() {
            return Ok(None);
        }
        let req = self.session_request(up, Method::GET, &format!("{what} (upload status)"));
        let stage = up.stage;
        let result = self.session_send(up, req, Stage::Other, retrier).await;
        up.stage = stage;
        match result {
            Ok(resp) => {
                let held = resp.header("range").and_then(range_end).unwrap_or(0);
                let s = up.session.as_mut().expect("open session");
                tracing::info!(%what, offset = held, "continuing the upload session");
                if held > s.offset {
                    retrier.progress();
                }
                s.offset = held;
                self.client.count_resumed();
                Ok(None)
            }
            Err(e) if session_lost(&e) => {
                up.session = None;
                match up.digest.clone() {
                    Some(d) if self.blob_landed(&d, retrier).await => Ok(Some(d)),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// The next `chunk` bytes of `stream` (fewer at its end, none after it).
async fn next_chunk(
    stream: &mut (impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin),
    buf: &mut BytesMut,
    chunk: u64,
    what: &str,
) -> Result<Bytes> {
    let chunk = usize::try_from(chunk).unwrap_or(usize::MAX);
    while buf.len() < chunk {
        match stream.next().await {
            Some(Ok(b)) => buf.extend_from_slice(&b),
            Some(Err(e)) => return Err(Error::new(ErrorKind::Io, format!("{what}: reading: {e}"))),
            None => break,
        }
    }
    let n = buf.len().min(chunk);
    Ok(buf.split_to(n).freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges() {
        assert_eq!(range_end("0-99"), Some(100));
        assert_eq!(range_end("bytes=0-9"), Some(10));
        assert_eq!(range_end("0-0"), Some(0), "distribution's empty session");
        assert_eq!(range_end("garbage"), None);
    }

    #[test]
    fn fallbacks_change_the_mode() {
        let http = |s: u16| Error::http(ErrorKind::Registry, "x", s, Vec::new());
        let up = |mode, stage| Upload {
            mode,
            session: None,
            stage,
            digest: None,
        };
        let big = up(Mode::Monolithic, Stage::Put).fallback(&http(413));
        assert_eq!(big.unwrap().unwrap(), Mode::Chunked(DEFAULT_CHUNK_SIZE));
        let refused = up(Mode::Stream, Stage::Patch).fallback(&http(411));
        assert_eq!(refused.unwrap().unwrap(), Mode::Chunked(DEFAULT_CHUNK_SIZE));
        let halved = up(Mode::Chunked(1 << 20), Stage::Patch).fallback(&http(413));
        assert_eq!(halved.unwrap().unwrap(), Mode::Chunked(1 << 19));
        assert!(up(Mode::Chunked(MIN_CHUNK_SIZE), Stage::Patch)
            .fallback(&http(413))
            .unwrap()
            .is_err());
        // A bad digest at the PUT is not a reason to change anything.
        assert!(up(Mode::Stream, Stage::Put).fallback(&http(400)).is_none());
        assert!(session_lost(&session_error(http(404))));
    }
}
