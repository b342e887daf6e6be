"""The exceptions raised by spack_oci_rs.

Every error is an :class:`OciError`. Subclasses say what went wrong; some also derive from the
matching builtin (``ValueError``, ``OSError``) so generic handlers keep working. Messages name
the operation, registry, repository and tag, digest or path; they never contain credentials.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "DigestMismatchError",
    "InvalidArgumentError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "InvalidResponseError",
    "LocalFileError",
    "NotFoundError",
    "OciError",
    "RegistryError",
    "SignatureError",
    "TransportError",
]


class OciError(Exception):
    """Base class of all spack_oci_rs errors.

    Attributes:
        status: HTTP status of the registry reply that caused the error, if any.
        codes: the registry's error codes (``BLOB_UNKNOWN``, ``DENIED``, ...), possibly empty.
        retryable: whether trying again later may succeed (429/503, 5xx, timeouts, resets);
            the engine has already spent its own retries when it raises.
        retry_after: the wait in seconds the registry asked for (``Retry-After``), if any.

    The lower-level cause (an I/O or connection error), when there is one, is ``__cause__``.
    """

    status: int | None
    codes: list[str]
    retryable: bool
    retry_after: float | None

    def __init__(
        self,
        message: str,
        status: int | None = None,
        codes: list[str] | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.codes = list(codes or [])
        self.retryable = retryable
        self.retry_after = retry_after


class InvalidReferenceError(OciError, ValueError):
    """A malformed image reference or OCI mirror URL."""


class InvalidDigestError(OciError, ValueError):
    """A malformed digest (algorithm, length or characters)."""


class InvalidArgumentError(OciError, ValueError):
    """An invalid argument or option."""


class NotFoundError(OciError):
    """The registry has no such repository, tag, manifest or blob (HTTP 404)."""


class AuthenticationError(OciError):
    """Logging in failed or access was denied (HTTP 401/403, token server errors)."""


class DigestMismatchError(OciError):
    """Bytes did not match their expected digest; nothing was written."""


class RegistryError(OciError):
    """The registry answered with an unexpected HTTP status."""


class InvalidResponseError(RegistryError):
    """The registry's reply broke the protocol: not JSON, wrong media type, missing fields,
    or larger than allowed."""


class TransportError(OciError, ConnectionError):
    """Connecting, TLS, timeouts or a connection reset."""


class LocalFileError(OciError, OSError):
    """Reading or writing a local file or directory failed."""


class SignatureError(OciError):
    """An image is not signed by a trusted key, or its signature does not fit it: no
    signature, a bad signature, a signature for another digest, repository or tag, or a
    malformed signature image. The message names the image and the reason."""
