"""spack-oci-rs: a Rust engine for Spack's OCI build caches.

The functions below release the GIL while they work and raise the exceptions of
:mod:`spack_oci_rs.exceptions`. See ``_native.pyi`` for every argument.

The engine logs to the :mod:`logging` logger ``spack_oci_rs`` (requests at DEBUG: method,
URL, status, time, never headers; retries at INFO). Levels are cached on the Rust side: call
:func:`reset_logging` after changing them.
"""

from __future__ import annotations

from . import exceptions
from ._native import (
    Client,
    FetchResult,
    IndexConfigs,
    PrefetchResult,
    PushItem,
    PushResult,
    TarballInfo,
    __version__,
    blob_exists,
    build_index,
    copy_missing_layers,
    create_tarball,
    default_tag,
    ensure_valid_tag,
    fetch_blob,
    fetch_blobs,
    fetch_index,
    get_manifest_and_config,
    index_json,
    list_tags,
    parse_reference,
    prefetch_images,
    probe,
    push,
    reset_logging,
    upload_blob,
    upload_index,
    upload_manifest,
)
from .exceptions import (
    AuthenticationError,
    DigestMismatchError,
    InvalidArgumentError,
    InvalidDigestError,
    InvalidReferenceError,
    InvalidResponseError,
    LocalFileError,
    NotFoundError,
    OciError,
    RegistryError,
    TransportError,
)

__all__ = [
    "AuthenticationError",
    "Client",
    "DigestMismatchError",
    "FetchResult",
    "IndexConfigs",
    "InvalidArgumentError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "InvalidResponseError",
    "LocalFileError",
    "NotFoundError",
    "OciError",
    "PrefetchResult",
    "PushItem",
    "PushResult",
    "RegistryError",
    "TarballInfo",
    "TransportError",
    "__version__",
    "blob_exists",
    "build_index",
    "copy_missing_layers",
    "create_tarball",
    "default_tag",
    "ensure_valid_tag",
    "exceptions",
    "fetch_blob",
    "fetch_blobs",
    "fetch_index",
    "get_manifest_and_config",
    "index_json",
    "list_tags",
    "parse_reference",
    "prefetch_images",
    "probe",
    "push",
    "reset_logging",
    "upload_blob",
    "upload_index",
    "upload_manifest",
]
