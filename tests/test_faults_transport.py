"""The request path under registry faults (issue 15), through the Python API: a push of
several items (a streamed prefix layer, a small in-memory prefix, a tarball-file layer,
chunked uploads, a base image), a fetch, and build_index/upload_index, each under one fault
mode of tests/faultproxy.py, checked byte for byte against the same work without faults.
The throttled and resumed counts are printed (``pytest -s``)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from faultproxy import Fault, FaultProxy
from registry import Registry

UPLOAD = r"/blobs/uploads/."
BIG = 9 * 1024 * 1024  # above SMALL_PREFIX: streamed


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client(**kw: Any) -> oci.Client:
    opts: dict[str, Any] = {"retries": 6, "retry_backoff": 0.05, "read_timeout": 20.0}
    opts.update(kw)
    return oci.Client(**opts)


@dataclass(frozen=True)
class Work:
    """Sources made once per module: the same bytes for every fault mode."""

    big: Path
    small: Path
    tarball: Path


def _prefix(root: Path, name: str, size: int, seed: int) -> Path:
    prefix = root / "store" / f"{name}-1.0-{name}hash"
    (prefix / "lib").mkdir(parents=True)
    rnd = hashlib.sha256(str(seed).encode()).digest()
    data = (rnd * (size // len(rnd) + 1))[: size // 2] + os.urandom(size - size // 2)
    (prefix / "lib" / "data.bin").write_bytes(data)
    (prefix / ".spack").mkdir()
    (prefix / ".spack" / "spec.json").write_text("{}")
    return prefix


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Work:
    root = tmp_path_factory.mktemp("transport-work")
    buf = io.BytesIO()
    payload = os.urandom(300_000)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("share/data")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    tarball = root / "file-1.0.tar.gz"
    tarball.write_bytes(buf.getvalue())
    return Work(
        big=_prefix(root, "big", BIG, 1),
        small=_prefix(root, "small", 50_000, 2),
        tarball=tarball,
    )


def items(w: Work) -> list[oci.PushItem]:
    def spec(name: str) -> dict[str, Any]:
        return {"spec": {"_meta": {"version": 5}, "nodes": [{"name": name}]}}

    return [
        oci.PushItem(
            "big-1.0-bighash.spack",
            prefix=w.big,
            prefixes_to_relocate=[str(w.big)],
            extra_config=spec("big"),
        ),
        oci.PushItem(
            "small-1.0-smallhash.spack",
            prefix=w.small,
            prefixes_to_relocate=[str(w.small)],
            extra_config=spec("small"),
        ),
        oci.PushItem("file-1.0-filehash.spack", tarball=w.tarball, extra_config=spec("file")),
    ]


@pytest.fixture(scope="module")
def base(registry: Registry) -> str:
    """A base image on the registry (its layers are mounted into every target)."""
    ref = registry.repo_url("transport-base")
    layer = hashlib.sha256(b"base layer").digest() * 2000
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    ld, _ = oci.upload_blob(ref, layer)
    cd, _ = oci.upload_blob(ref, cfg)
    manifest = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cd,
            "size": len(cfg),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": ld,
                "size": len(layer),
            }
        ],
    }
    oci.upload_manifest(f"{ref}:base", manifest)
    return f"{ref}:base"


@pytest.fixture(scope="module")
def reference(registry: Registry, work: Work, base: str) -> dict[str, tuple[str, str]]:
    """The fault-free push: tag -> (layer digest, diff_id)."""
    ref = registry.repo_url("transport-reference")
    results = oci.push(ref, items(work), base_image=base, client=client())
    assert [r.status for r in results] == ["pushed"] * 3, [str(r.error) for r in results]
    return {r.tag: (str(r.digest), str(r.diff_id)) for r in results}


@dataclass(frozen=True)
class Ctx:
    """What every push test uses."""

    make_proxy: Callable[..., FaultProxy]
    registry: Registry
    repo: str
    work: Work
    base: str
    reference: dict[str, tuple[str, str]]
    tmp: Path


@pytest.fixture
def ctx(
    make_proxy: Callable[..., FaultProxy],
    registry: Registry,
    repo_name: str,
    work: Work,
    base: str,
    reference: dict[str, tuple[str, str]],
    tmp_path: Path,
) -> Ctx:
    return Ctx(make_proxy, registry, repo_name, work, base, reference, tmp_path)


def check_push(proxy: FaultProxy, c: Ctx, label: str) -> list[oci.PushResult]:
    registry, repo, work, base, reference = c.registry, c.repo, c.work, c.base, c.reference
    """Push through ``proxy``; the layers equal the fault-free ones byte for byte, the
    images are complete, and the counts are printed."""
    t = time.monotonic()
    counts: list[tuple[int, int]] = []

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "bytes":
            counts.append((info["done"], info["total"]))

    results = oci.push(
        proxy.repo_url(repo), items(work), base_image=base, progress=progress, client=client()
    )
    seconds = time.monotonic() - t
    assert [r.status for r in results] == ["pushed"] * 3, [str(r.error) for r in results]
    # Byte progress counts every input byte once, however often a layer was archived again.
    inputs = sum(
        f.stat().st_size for p in (work.big, work.small) for f in p.rglob("*") if f.is_file()
    )
    inputs += work.tarball.stat().st_size
    done = [d for d, _ in counts]
    assert done == sorted(done) and counts[-1] == (inputs, inputs), counts
    assert {r.tag: (r.digest, r.diff_id) for r in results} == reference
    direct = registry.repo_url(repo)
    for r in results:
        m, cfg = oci.get_manifest_and_config(f"{direct}:{r.tag}")
        assert m["layers"][-1]["digest"] == r.digest
        assert cfg["rootfs"]["diff_ids"][-1] == r.diff_id
        assert len(m["layers"]) == 2  # the base layer, then the item's
    r0 = results[0]
    print(
        f"\n[{label}] push of {len(results)} items: {proxy.requests} requests, "
        f"{proxy.throttled} throttled by the proxy ({r0.throttled} seen), "
        f"waited {r0.throttle_wait:.1f}s, resumed {r0.resumed}, retries {r0.retries}, "
        f"{seconds:.1f}s"
    )
    return results


def check_fetch_and_index(proxy: FaultProxy, registry: Registry, repo: str, tmp: Path) -> None:
    """A fetch and an index round trip through ``proxy`` give the registry's bytes."""
    ref = proxy.repo_url(repo)
    direct = registry.repo_url(repo)
    m, _ = oci.get_manifest_and_config(f"{direct}:big-1.0-bighash.spack")
    layer = m["layers"][-1]["digest"]
    oci.fetch_blob(ref, layer, tmp / "layer", client=client())
    assert sha((tmp / "layer").read_bytes()) == layer
    configs = oci.build_index(ref, client=client())
    assert configs.spec_tags == 3 and not configs.skipped
    index = b'{"database":{"version":"8","installs":{}}}'
    digest = oci.upload_index(ref, index, client=client())
    got = oci.fetch_index(direct)
    assert got is not None and got[1] == index and digest


# -- (a) the first request to every URL is refused -----------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_first_request_per_url_refused(ctx: Ctx, status: int) -> None:
    proxy = ctx.make_proxy(first_per_url=status)
    results = check_push(proxy, ctx, f"first/{status}")
    # Every refused request inside an upload session was retried on that session.
    assert results[0].throttled >= proxy.count("PATCH") // 2 > 0
    assert proxy.count("POST", r"/blobs/uploads/$") <= proxy.throttled
    check_fetch_and_index(proxy, ctx.registry, ctx.repo, ctx.tmp)


# -- (b) a token-bucket rate limit ---------------------------------------------------------


def test_rate_limit_4_per_second(ctx: Ctx) -> None:
    proxy = ctx.make_proxy(rate_limit=4)
    check_push(proxy, ctx, "4 req/s")
    rejected = proxy.throttled / proxy.requests
    print(f"[4 req/s] {proxy.throttled}/{proxy.requests} rejected = {rejected:.0%}")
    assert rejected <= 0.20


def test_rate_limit_20_per_second_50_items(
    make_proxy: Callable[..., FaultProxy], registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    proxy = make_proxy(rate_limit=20)
    push_items = []
    for i in range(50):
        prefix = _prefix(tmp_path, f"p{i}", 2000, i)
        push_items.append(
            oci.PushItem(f"p{i}-1.0-h{i}.spack", prefix=prefix, prefixes_to_relocate=[str(prefix)])
        )
    t = time.monotonic()
    results = oci.push(proxy.repo_url(repo_name), push_items, client=client())
    assert [r.status for r in results] == ["pushed"] * 50, [str(r.error) for r in results]
    rejected = proxy.throttled / proxy.requests
    print(
        f"\n[20 req/s] push of 50 items: {proxy.throttled}/{proxy.requests} rejected = "
        f"{rejected:.0%}, waited {results[0].throttle_wait:.1f}s, "
        f"{time.monotonic() - t:.1f}s"
    )
    assert rejected <= 0.10
    assert len(oci.list_tags(registry.repo_url(repo_name))) == 50


# -- (c) a reset in the middle of a PATCH or PUT body --------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_reset_mid_body_resumes_at_the_offset(ctx: Ctx, method: str) -> None:
    proxy = ctx.make_proxy()
    # PATCH: the streamed prefix; PUT: the tarball file's monolithic upload.
    path = UPLOAD if method == "PATCH" else r"/blobs/uploads/.+digest="
    proxy.add(Fault.reset_body(after=100_000), method, path, times=2)
    results = check_push(proxy, ctx, f"reset/{method}")
    assert results[0].resumed >= 1
    # The upload went on in its session: asked for its offset, no second POST for it.
    assert proxy.count("GET", UPLOAD) >= 1
    check_fetch_and_index(proxy, ctx.registry, ctx.repo, ctx.tmp)


# -- (d) a lost reply after the registry stored the bytes ----------------------------------


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_lost_reply(ctx: Ctx, method: str) -> None:
    proxy = ctx.make_proxy()
    path = UPLOAD if method == "PATCH" else r"/blobs/uploads/.+digest="
    proxy.add(Fault.lost(), method, path, times=2)
    results = check_push(proxy, ctx, f"lost/{method}")
    assert proxy.count("GET", UPLOAD) >= 1
    if method == "PATCH":
        assert results[0].resumed >= 1  # the session held the whole PATCH: on to the PUT
    check_fetch_and_index(proxy, ctx.registry, ctx.repo, ctx.tmp)


# -- (e) PATCH answered 204 ----------------------------------------------------------------


def test_patch_answered_204(ctx: Ctx) -> None:
    proxy = ctx.make_proxy(patch_status=204, max_body=4 * 1024 * 1024)
    check_push(proxy, ctx, "PATCH 204 + chunks")
    assert proxy.count("PATCH") >= 3  # the stream refused as too large, then chunks
    assert {r.status for r in proxy.records("PATCH")} <= {204, 413}


# -- local before remote --------------------------------------------------------------------


def test_missing_local_path_fails_before_any_request(
    make_proxy: Callable[..., FaultProxy], repo_name: str, tmp_path: Path
) -> None:
    proxy = make_proxy()
    t = time.monotonic()
    (r,) = oci.push(
        proxy.repo_url(repo_name), [oci.PushItem("x", prefix=tmp_path / "nope")], client=client()
    )
    assert time.monotonic() - t < 1.0
    assert r.status == "failed" and isinstance(r.error, oci.LocalFileError)
    assert "nope" in str(r.error) and not r.error.retryable
    assert isinstance(r.error.__cause__, OSError)
    assert proxy.requests == 0


def test_unreachable_registry_is_reported_once(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = client()
    t = time.monotonic()
    with pytest.raises(oci.TransportError) as ei:
        oci.list_tags(f"oci+http://127.0.0.1:{port}/x", client=c)
    assert f"registry 127.0.0.1:{port} is unreachable" in str(ei.value)
    assert "attempts" not in str(ei.value) and not ei.value.retryable
    tarball = tmp_path / "t.tar.gz"
    tarball.write_bytes(b"x")
    results = oci.push(
        f"oci+http://127.0.0.1:{port}/x", [oci.PushItem("t", tarball=tarball)], client=c
    )
    assert results[0].status == "failed" and "unreachable" in str(results[0].error)
    assert time.monotonic() - t < 2.0
