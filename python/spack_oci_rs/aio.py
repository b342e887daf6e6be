"""asyncio twins of the main functions: same arguments and results, awaitable.

They run on the engine's own runtime (the one the synchronous functions use), so a
:class:`spack_oci_rs.Client` can be shared between both. Cancelling the awaiting task
cancels the transfers.

    import asyncio, spack_oci_rs.aio as oci

    async def main():
        tags = await oci.list_tags("oci://ghcr.io/org/cache")
        results = await oci.push("oci://ghcr.io/org/cache", items)
"""

from __future__ import annotations

from ._native import (
    blob_exists_async as blob_exists,
)
from ._native import (
    build_index_async as build_index,
)
from ._native import (
    fetch_blob_async as fetch_blob,
)
from ._native import (
    fetch_blobs_async as fetch_blobs,
)
from ._native import (
    get_manifest_and_config_async as get_manifest_and_config,
)
from ._native import (
    list_tags_async as list_tags,
)
from ._native import (
    prefetch_images_async as prefetch_images,
)
from ._native import (
    push_async as push,
)
from ._native import (
    sign_async as sign,
)
from ._native import (
    upload_index_async as upload_index,
)
from ._native import (
    verify_async as verify,
)

__all__ = [
    "blob_exists",
    "build_index",
    "fetch_blob",
    "fetch_blobs",
    "get_manifest_and_config",
    "list_tags",
    "prefetch_images",
    "push",
    "sign",
    "upload_index",
    "verify",
]
