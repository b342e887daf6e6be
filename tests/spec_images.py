"""Spack-like spec images made straight through the engine (no Spack, no tarball): a spec
config and one small layer under a ``*.spack`` tag. Used by the index tests and by
``bench/index_bench.py`` to make caches of thousands of tags quickly."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

import spack_oci_rs as oci

#: The layer :func:`fill` shares between all its images.
SHARED_LAYER = b"one tiny shared layer"


def put_image(ref: str, tag: str, config: bytes, layer: tuple[str, int] | None = None) -> str:
    """Upload ``config`` and tag a manifest with it and one layer as ``tag``; its digest.

    ``layer`` is the (digest, size) of a blob already in the repository; by default a small
    layer of this tag's own is uploaded."""
    config_digest, _ = oci.upload_blob(ref, config)
    if layer is None:
        data = f"layer of {tag}".encode()
        layer = (oci.upload_blob(ref, data)[0], len(data))
    manifest = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer[0],
                "size": layer[1],
            }
        ],
    }
    digest, _ = oci.upload_manifest(f"{ref}:{tag}", manifest)
    return digest


def shared_layer(ref: str) -> tuple[str, int]:
    """:data:`SHARED_LAYER` uploaded to ``ref``: its (digest, size)."""
    return oci.upload_blob(ref, SHARED_LAYER)[0], len(SHARED_LAYER)


def fill(ref: str, configs: Sequence[tuple[str, bytes]], jobs: int = 16) -> None:
    """One image per ``(tag, config)``, all with the shared layer, ``jobs`` at a time."""
    layer = shared_layer(ref)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda tc: put_image(ref, tc[0], tc[1], layer), configs))
