"""The asyncio twins (``spack_oci_rs.aio``) against the real registry."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest

import spack_oci_rs as oci
import spack_oci_rs.aio as aoci
from registry import Registry


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_async_twins(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    ref = registry.repo_url(repo_name)
    prefix = tmp_path / "store" / "pkg-1.0-abc"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "tool").write_text(f"#!/bin/sh\necho {prefix}\n")
    client = oci.Client()

    async def main() -> None:
        results = await aoci.push(
            ref, [oci.PushItem("pkg.spack", prefix=prefix, extra_config={"spec": {}})],
            client=client,
        )  # fmt: skip
        assert [r.status for r in results] == ["pushed"], results[0].error
        tags, exists = await asyncio.gather(
            aoci.list_tags(ref, client=client),
            aoci.blob_exists(ref, results[0].digest or "", client=client),
        )
        assert tags == ["pkg.spack"] and exists
        manifest, config = await aoci.get_manifest_and_config(f"{ref}:pkg.spack")
        assert "spec" in config
        assert manifest["layers"][-1]["digest"] == results[0].digest
        size = await aoci.fetch_blob(ref, results[0].digest or "", tmp_path / "layer")
        assert size == results[0].size
        wanted = [
            (ref, manifest["config"]["digest"], tmp_path / "cfg"),
            (ref, sha(b"x"), tmp_path / "x"),
        ]
        fetched = await aoci.fetch_blobs(wanted)
        assert [f.ok for f in fetched] == [True, False]
        assert isinstance(fetched[1].error, oci.NotFoundError)
        index = await aoci.build_index(ref)
        assert [t for t, _, _ in index.configs] == ["pkg.spack"]
        await aoci.upload_index(ref, b"{}")
        pre = await aoci.prefetch_images([f"{ref}:pkg.spack"], tmp_path / "cache")
        assert pre[0].ok and pre[0].downloaded == 2
        with pytest.raises(oci.InvalidReferenceError):
            await aoci.list_tags("not a ref")
        with pytest.raises(oci.TransportError):
            await aoci.list_tags("oci+http://127.0.0.1:9/x", client=oci.Client(retries=1))

    asyncio.run(main())
    # The sync API still works on the same runtime afterwards.
    assert "index.spack" in oci.list_tags(ref, client=client)


def test_cancelling_an_awaitable(registry: Registry, repo_name: str) -> None:
    # A server that accepts connections and never answers: the request waits until cancelled
    # (a closed port would fail at once: an unreachable registry is not retried).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]

    async def main() -> None:
        task = asyncio.ensure_future(
            aoci.list_tags(f"oci+http://127.0.0.1:{port}/x", client=oci.Client(retries=50))
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        silent.close()


def test_every_twin_has_its_namesakes_signature() -> None:
    import inspect

    for name in aoci.__all__:
        sync, twin = getattr(oci, name), getattr(aoci, name)
        assert inspect.signature(twin) == inspect.signature(sync), name
        assert inspect.iscoroutinefunction(twin), name


def test_twins_check_arguments_before_any_request(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(oci.InvalidDigestError):
            await aoci.fetch_blob("oci+http://127.0.0.1:9/x", "sha256:nope", tmp_path / "f")
        with pytest.raises(oci.InvalidArgumentError, match="bytes or a path"):
            await aoci.upload_blob("oci+http://127.0.0.1:9/x", 42)  # type: ignore[arg-type]

    asyncio.run(main())
