//! One error type for the whole engine: a kind to match on, a message that names the
//! operation, registry, repository and tag/digest/path, and for registry replies the HTTP
//! status and the registry's error codes. Messages never contain credentials.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong, coarse enough for callers (and the Python exception hierarchy) to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A malformed image reference or OCI URL.
    InvalidReference,
    /// A malformed digest (algorithm, length, characters).
    InvalidDigest,
    /// The registry has no such repository, tag, manifest or blob (HTTP 404).
    NotFound,
    /// Authentication or authorization failed (HTTP 401/403, token server errors).
    Authentication,
    /// Downloaded or built bytes do not match the expected digest.
    DigestMismatch,
    /// The registry answered with an unexpected HTTP status.
    Registry,
    /// The registry answered with something that is not what the protocol says (bad JSON,
    /// wrong media type, missing fields, oversized documents).
    InvalidResponse,
    /// Connecting, TLS, timeouts, resets.
    Transport,
    /// Local file system errors (reading a prefix or tarball, writing a download).
    Io,
    /// Invalid arguments or options.
    InvalidInput,
    /// The operation was cancelled (Ctrl-C).
    Cancelled,
    /// An image is unsigned or its signature is not acceptable (see [`crate::sign`]).
    Signature,
}

/// What went wrong on the wire, for transport errors: one of the inputs of
/// [`crate::transport::retry::is_retryable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// Connection refused, no route, DNS failure: the registry cannot be reached at all.
    Unreachable,
    /// No answer, or no bytes, within the time limits.
    Timeout,
    /// The connection went away mid-request or mid-answer (reset, closed, lost reply).
    Interrupted,
    /// Certificates, a server that does not speak TLS, a fatal TLS alert.
    Tls,
    /// The registry answered a `Range` request with the wrong bytes or refused it.
    BadRange,
}

/// An error code from a registry error body: `{"errors":[{"code":…,"message":…}]}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCode {
    pub code: String,
    pub message: String,
}

/// The engine's error.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    codes: Vec<RegistryCode>,
    retry_after: Option<Duration>,
    cause: Option<Cause>,
    /// Retries were spent on it: an enclosing operation must not retry it again.
    exhausted: bool,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            codes: Vec::new(),
            retry_after: None,
            cause: None,
            exhausted: false,
            source: None,
        }
    }

    pub fn invalid_digest(message: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvalidDigest,
            format!("invalid digest {message}"),
        )
    }

    pub fn invalid_reference(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidReference, message)
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn invalid_response(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidResponse, message)
    }

    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "operation cancelled")
    }

    /// An I/O error on a path: the message names the path and what was being done; the
    /// I/O error is its source.
    pub fn io(action: &str, path: &Path, err: &io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{action} {}: {err}", path.display()))
            .with_source(io::Error::new(err.kind(), err.to_string()))
    }

    /// An HTTP status error with the registry's codes.
    pub fn http(
        kind: ErrorKind,
        message: impl Into<String>,
        status: u16,
        codes: Vec<RegistryCode>,
    ) -> Self {
        let mut e = Self::new(kind, message);
        e.status = Some(status);
        e.codes = codes;
        e
    }

    #[must_use]
    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    /// Keep `source` as the error's cause ([`std::error::Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Mark the error as final: its retries are spent (see [`Error::is_exhausted`]).
    #[must_use]
    pub fn exhausted(mut self) -> Self {
        self.exhausted = true;
        self
    }

    #[must_use]
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The same error with its message rewritten (kind, cause, status, codes kept).
    #[must_use]
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.message = f(&self.message);
        self
    }

    /// Prefix the message with more context ("pushing foo: …").
    #[must_use]
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// HTTP status of the registry reply, if the error came from one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The registry's error codes (`BLOB_UNKNOWN`, `DENIED`, …).
    pub fn codes(&self) -> &[RegistryCode] {
        &self.codes
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c.code == code)
    }

    /// Whether trying again may succeed: decided in one place,
    /// [`crate::transport::retry::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        crate::transport::retry::is_retryable(self)
    }

    /// What went wrong on the wire, for transport errors.
    pub fn cause(&self) -> Option<Cause> {
        self.cause
    }

    /// The same error as if no retries had been spent on it (for "may a later try
    /// succeed?").
    #[must_use]
    pub fn retried_again(mut self) -> Self {
        self.exhausted = false;
        self
    }

    /// Whether retries were already spent on this error.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// The delay a registry asked for with `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.codes.is_empty() {
            let codes: Vec<String> = self
                .codes
                .iter()
                .map(|c| {
                    if c.message.is_empty() {
                        c.code.clone()
                    } else {
                        format!("{}: {}", c.code, c.message)
                    }
                })
                .collect();
            write!(f, " [{}]", codes.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
