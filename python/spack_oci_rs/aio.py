"""asyncio twins of the engine's calls: same arguments and results, awaitable.

They run on the engine's own runtime (the one the synchronous functions use), so a
:class:`spack_oci_rs.Client` can be shared between both. Cancelling the awaiting task
cancels the transfers. Each twin is the native function that the Rust definition of its
synchronous namesake also produces (``twins!`` in ``src/python/call.rs``), typed here from
that namesake's stub.

    import asyncio, spack_oci_rs.aio as oci

    async def main():
        tags = await oci.list_tags("oci://ghcr.io/org/cache")
        results = await oci.push("oci://ghcr.io/org/cache", items)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from . import _native

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _twin(sync: Callable[_P, _R]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """The awaitable twin of the native ``sync`` function, with its signature."""
    native = getattr(_native, f"_{sync.__name__}_async")

    @functools.wraps(sync)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return cast("_R", await native(*args, **kwargs))

    return call


blob_exists = _twin(_native.blob_exists)
build_index = _twin(_native.build_index)
copy_missing_layers = _twin(_native.copy_missing_layers)
fetch_blob = _twin(_native.fetch_blob)
fetch_blobs = _twin(_native.fetch_blobs)
fetch_index = _twin(_native.fetch_index)
get_manifest_and_config = _twin(_native.get_manifest_and_config)
list_tags = _twin(_native.list_tags)
prefetch_images = _twin(_native.prefetch_images)
probe = _twin(_native.probe)
push = _twin(_native.push)
upload_blob = _twin(_native.upload_blob)
upload_index = _twin(_native.upload_index)
upload_manifest = _twin(_native.upload_manifest)

__all__ = [
    "blob_exists",
    "build_index",
    "copy_missing_layers",
    "fetch_blob",
    "fetch_blobs",
    "fetch_index",
    "get_manifest_and_config",
    "list_tags",
    "prefetch_images",
    "probe",
    "push",
    "upload_blob",
    "upload_index",
    "upload_manifest",
]
