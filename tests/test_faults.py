"""Reliability under faults: the engine through tests/faultproxy.py in front of the real
registry. Every scenario asserts the outcome (success after retries, or the specific
exception and message), how many requests it took, and that no partial file is left."""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from faultproxy import OCI_MANIFEST, Fault, FaultProxy, Request
from registry import Registry
from spack_oci_rs import exceptions as exc

BLOB = r"/blobs/sha256:"
UPLOADS = r"/blobs/uploads/$"
UPLOAD_PUT = r"/blobs/uploads/.+digest="
MANIFEST = r"/manifests/"
TAGS = r"/tags/list"
JSON = "application/json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client(**kw: Any) -> oci.Client:
    """A client with fast backoff, so that tests with retries stay quick."""
    opts: dict[str, Any] = {
        "retries": 5,
        "retry_backoff": 0.02,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
    }
    opts.update(kw)
    return oci.Client(**opts)


def leftovers(*dirs: Path) -> list[Path]:
    """Partial downloads and layer temp files under ``dirs``."""
    out = []
    for d in dirs:
        for p in d.rglob("*"):
            if p.name.endswith(".part") or p.name.startswith(".spack-oci-layer-"):
                out.append(p)
    return out


@pytest.fixture
def proxy(make_proxy: Callable[..., FaultProxy]) -> FaultProxy:
    return make_proxy()


def seed(registry: Registry, repo: str, data: bytes) -> str:
    """Upload ``data`` straight to the registry (not through the proxy)."""
    digest, _ = oci.upload_blob(registry.repo_url(repo), data)
    return digest


def seed_image(registry: Registry, repo: str, tag: str = "t") -> tuple[dict[str, Any], bytes]:
    """A small image (config + one layer) tagged ``tag``; returns (manifest, layer bytes)."""
    ref = registry.repo_url(repo)
    layer = os.urandom(5000)
    cfg = b'{"architecture":"amd64","os":"linux"}'
    manifest = {
        "mediaType": OCI_MANIFEST,
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": seed(registry, repo, cfg),
            "size": len(cfg),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": seed(registry, repo, layer),
                "size": len(layer),
            }
        ],
    }
    oci.upload_manifest(f"{ref}:{tag}", manifest)
    return manifest, layer


# -- retries: 429, 5xx, what is not retried, bounded failure -------------------------------


def test_429_retry_after_seconds(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.too_many("1"), "GET", BLOB)
    t = time.monotonic()
    [r] = oci.fetch_blobs([(proxy.repo_url(repo_name), d, tmp_path / "b")], client=client())
    elapsed = time.monotonic() - t
    assert r.ok, r.error
    assert r.retries == 1 and (tmp_path / "b").read_bytes() == data
    # The backoff alone would be 20 ms: the registry's Retry-After was honoured.
    assert elapsed >= 1.0
    assert [x.status for x in proxy.records("GET", BLOB)] == [429, 200]


def test_429_retry_after_http_date(proxy: FaultProxy, registry: Registry, repo_name: str) -> None:
    d = seed(registry, repo_name, b"dated")
    proxy.add(Fault.too_many(email.utils.formatdate(time.time() + 2, usegmt=True)), "HEAD", BLOB)
    t = time.monotonic()
    assert oci.blob_exists(proxy.repo_url(repo_name), d, client=client())
    # An HTTP-date has a one-second resolution: at least one of the two seconds remains.
    assert time.monotonic() - t >= 0.95
    assert proxy.count("HEAD", BLOB) == 2


def test_retry_after_beyond_budget_fails_at_once(
    proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    proxy.add(Fault.too_many("3600"), times=None)
    t = time.monotonic()
    with pytest.raises(exc.RegistryError) as ei:
        oci.list_tags(proxy.repo_url(repo_name), client=client(retry_budget=10))
    assert time.monotonic() - t < 2
    assert ei.value.status == 429 and "TOOMANYREQUESTS" in ei.value.codes
    assert "retry after 3600s" in str(ei.value)
    assert proxy.requests == 1


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_bursts_are_retried(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path, code: int
) -> None:
    manifest, layer = seed_image(registry, repo_name)
    ref = proxy.repo_url(repo_name)
    c = client()
    proxy.add(Fault.respond(code), "GET", TAGS, times=3)
    assert oci.list_tags(ref, client=c) == ["t"]
    assert proxy.count("GET", TAGS) == 4
    proxy.add(Fault.respond(code), "GET", MANIFEST, times=2)
    proxy.add(Fault.respond(code), "GET", BLOB, times=2)
    m, cfg = oci.get_manifest_and_config(f"{ref}:t", client=c)
    assert m == manifest and cfg == {"architecture": "amd64", "os": "linux"}
    assert proxy.count("GET", MANIFEST) == 3
    proxy.add(Fault.respond(code), "POST", UPLOADS, times=2)
    assert oci.upload_blob(ref, b"after a burst", client=c) == (sha(b"after a burst"), True)
    assert proxy.count("POST", UPLOADS) == 3
    assert registry.get_blob(repo_name, sha(b"after a burst")) == b"after a burst"
    assert oci.fetch_blob(ref, manifest["layers"][0]["digest"], tmp_path / "l", client=c) == 5000
    assert (tmp_path / "l").read_bytes() == layer


def test_failing_registry_is_bounded(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """A registry that always answers 503 gets a bounded number of requests per operation,
    and the error comes after the attempts or the time budget."""
    d = seed(registry, repo_name, b"never fetched")
    body = b'{"errors":[{"code":"UNAVAILABLE","message":"overloaded"}]}'
    proxy.add(Fault.respond(503, content=body, content_type=JSON), times=None)
    ref = proxy.repo_url(repo_name)
    c = client(retries=4)
    with pytest.raises(exc.RegistryError) as ei:
        oci.fetch_blob(ref, d, tmp_path / "x", client=c)
    assert ei.value.status == 503 and ei.value.codes == ["UNAVAILABLE"]
    assert "after 4 attempts" in str(ei.value)
    assert proxy.requests == 4

    before = proxy.requests
    with pytest.raises(exc.RegistryError):
        oci.upload_blob(ref, b"x", client=c)
    assert proxy.requests - before == 4

    tarball = tmp_path / "x.tar.gz"
    tarball.write_bytes(b"not really a tarball")
    before = proxy.requests
    results = oci.push(ref, [oci.PushItem("x", tarball=tarball, diff_id=sha(b"x"))], client=c)
    assert results[0].status == "failed"
    assert isinstance(results[0].error, exc.RegistryError) and results[0].error.status == 503
    # 4 attempts each: the tag listing, the tag's manifest (checked directly when listing
    # fails, as Spack does) and the layer's HEAD; then the item fails.
    assert proxy.requests - before == 12

    # A generous attempt count is still cut by the time budget.
    before = proxy.requests
    t = time.monotonic()
    with pytest.raises(exc.RegistryError) as ei:
        oci.list_tags(ref, client=client(retries=1000, retry_budget=1.0, retry_backoff=0.05))
    assert time.monotonic() - t < 2.5
    assert "retry budget" in str(ei.value)
    assert proxy.requests - before < 30
    assert leftovers(tmp_path) == [] and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("code", "cls"),
    [(400, exc.RegistryError), (403, exc.AuthenticationError), (404, exc.NotFoundError)],
)
def test_client_errors_are_not_retried(
    proxy: FaultProxy, registry: Registry, repo_name: str, code: int, cls: type[Exception]
) -> None:
    seed_image(registry, repo_name)
    proxy.add(Fault.respond(code), "GET", MANIFEST, times=None)
    with pytest.raises(cls) as ei:
        oci.get_manifest_and_config(f"{proxy.repo_url(repo_name)}:t", client=client())
    assert getattr(ei.value, "status", None) == code
    assert proxy.requests == 1


def test_401_is_retried_once_with_credentials_only(
    proxy: FaultProxy, registry: Registry, repo_name: str
) -> None:
    proxy.add(Fault.respond(401, headers={"WWW-Authenticate": 'Basic realm="r"'}), times=None)
    ref = proxy.repo_url(repo_name)
    with pytest.raises(exc.AuthenticationError, match=r"credentials.*configured") as ei:
        oci.list_tags(ref, client=client())
    assert ei.value.status == 401 and proxy.host in str(ei.value)
    assert proxy.requests == 1
    creds = client(credentials={proxy.host: ("user", "secret-pw")})
    with pytest.raises(exc.AuthenticationError, match="rejected") as ei2:
        oci.list_tags(ref, client=creds)
    assert ei2.value.status == 401 and "secret-pw" not in str(ei2.value)
    assert proxy.requests == 1 + 2  # one re-authentication, no retries


# -- downloads: resume, restart, stalls, wrong bytes, nothing left behind ------------------


def test_download_resumes_with_range(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.reset(after=1_000_000), "GET", BLOB)
    proxy.add(Fault.truncate(after=500_000), "GET", BLOB)
    [r] = oci.fetch_blobs([(proxy.repo_url(repo_name), d, tmp_path / "b")], client=client())
    assert r.ok, r.error
    assert (r.size, r.resumed, r.restarted, r.retries) == (len(data), 2, 0, 2)
    assert sha((tmp_path / "b").read_bytes()) == d
    recs = proxy.records("GET", BLOB)
    assert [x.status for x in recs] == [200, 206, 206]
    assert recs[0].range is None
    # The reset may lose bytes in flight; the truncation (clean close) loses none.
    first = int(recs[1].range.removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert 0 < first <= 1_000_000
    assert recs[2].range == f"bytes={first + 500_000}-"
    assert recs[2].content_range == f"bytes {first + 500_000}-{len(data) - 1}/{len(data)}"
    assert leftovers(tmp_path) == []


def test_download_restarts_without_range(
    make_proxy: Callable[..., FaultProxy], registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    proxy = make_proxy(range_support=False)
    data = os.urandom(2 * 1024 * 1024)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.truncate(after=700_000), "GET", BLOB)
    [r] = oci.fetch_blobs([(proxy.repo_url(repo_name), d, tmp_path / "b")], client=client())
    assert r.ok, r.error
    assert (r.resumed, r.restarted) == (0, 1)
    assert (tmp_path / "b").read_bytes() == data
    recs = proxy.records("GET", BLOB)
    assert [(x.range, x.status) for x in recs] == [(None, 200), ("bytes=700000-", 200)]


def test_progress_starts_the_attempt_count_over(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """Every answer is cut short, but each brings more bytes: with 2 attempts allowed the
    download still completes, in 4 requests."""
    data = os.urandom(1_000_000)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.truncate(after=300_000), "GET", BLOB, times=None)
    [r] = oci.fetch_blobs(
        [(proxy.repo_url(repo_name), d, tmp_path / "b")], client=client(retries=2)
    )
    assert r.ok, r.error
    assert r.resumed == 3 and (tmp_path / "b").read_bytes() == data
    # No progress at all: the attempts run out.
    proxy.clear()
    proxy.add(Fault.reset(after=0), "GET", BLOB, times=None)
    before = proxy.requests
    with pytest.raises(exc.TransportError, match="after 2 attempts"):
        oci.fetch_blob(proxy.repo_url(repo_name), d, tmp_path / "c", client=client(retries=2))
    assert proxy.requests - before == 2
    assert not (tmp_path / "c").exists() and leftovers(tmp_path) == []


def test_stall_longer_than_read_timeout(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(1_000_000)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.stall(30, after=200_000), "GET", BLOB)
    t = time.monotonic()
    [r] = oci.fetch_blobs(
        [(proxy.repo_url(repo_name), d, tmp_path / "b")], client=client(read_timeout=0.5)
    )
    assert r.ok, r.error
    assert time.monotonic() - t < 5
    assert r.resumed == 1 and (tmp_path / "b").read_bytes() == data
    assert proxy.records("GET", BLOB)[1].range == "bytes=200000-"


def test_wrong_bytes_with_status_200(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    d = seed(registry, repo_name, data)
    ref = proxy.repo_url(repo_name)
    # Once: downloaded again from the start, verified.
    proxy.add(Fault.corrupt(), "GET", BLOB)
    [r] = oci.fetch_blobs([(ref, d, tmp_path / "ok")], client=client())
    assert r.ok and r.restarted == 1 and (tmp_path / "ok").read_bytes() == data
    # Always: DigestMismatchError, and no file at all.
    proxy.add(Fault.corrupt(), "GET", BLOB, times=None)
    before = proxy.count("GET", BLOB)
    dest = tmp_path / "out" / "bad"
    dest.parent.mkdir()
    with pytest.raises(exc.DigestMismatchError) as ei:
        oci.fetch_blob(ref, d, dest, client=client())
    assert d in str(ei.value) and str(dest) in str(ei.value)
    assert proxy.count("GET", BLOB) - before == 2
    assert list(dest.parent.iterdir()) == []
    # The download cache of prefetch_images holds no partial or wrong file either.
    seed_image(registry, repo_name)
    cache = tmp_path / "cache"
    [p] = oci.prefetch_images([f"{ref}:t"], cache, client=client())
    assert not p.ok and isinstance(p.error, exc.DigestMismatchError)
    assert [f for f in cache.rglob("*") if f.is_file()] == []


def test_failed_download_leaves_nothing(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(500_000)
    d = seed(registry, repo_name, data)
    proxy.add(Fault.drop(), "GET", BLOB, times=None)
    dest = tmp_path / "dest"
    with pytest.raises(exc.TransportError) as ei:
        oci.fetch_blob(proxy.repo_url(repo_name), d, dest, client=client(retries=3))
    assert "after 3 attempts" in str(ei.value) and repo_name in str(ei.value)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


# -- bad answers: HTML, malformed JSON, wrong media types and digests, oversized ---------


def test_html_instead_of_json(proxy: FaultProxy, registry: Registry, repo_name: str) -> None:
    seed_image(registry, repo_name)
    ref = proxy.repo_url(repo_name)
    url = f"http://{proxy.host}/v2/{repo_name}/manifests/t"
    proxy.add(Fault.html(200), "GET", MANIFEST)
    with pytest.raises(exc.InvalidResponseError) as ei:
        oci.get_manifest_and_config(f"{ref}:t", client=client())
    assert "HTML" in str(ei.value) and url in str(ei.value)
    assert proxy.count("GET", MANIFEST) == 1  # not retried: it would not change

    proxy.add(Fault.html(502), "GET", MANIFEST, times=None)
    with pytest.raises(exc.RegistryError) as ei2:
        oci.get_manifest_and_config(f"{ref}:t", client=client(retries=3))
    assert ei2.value.status == 502 and "HTML page" in str(ei2.value)
    assert proxy.count("GET", MANIFEST) == 1 + 3

    proxy.add(Fault.html(200), "GET", TAGS)
    with pytest.raises(exc.InvalidResponseError) as ei3:
        oci.list_tags(ref, client=client())
    assert f"http://{proxy.host}/v2/{repo_name}/tags/list" in str(ei3.value)


def _manifest_with_config_digest(digest: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest, "size": 2},
            "layers": [],
        }
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'{"schemaVersion": 2, "layers": [', OCI_MANIFEST, "not JSON"),
        (b'{"schemaVersion": 2, "mediaType": "x/y"}', JSON, 'media type "x/y" (Content-Type "ap'),
        (_manifest_with_config_digest("md5:" + "0" * 32), OCI_MANIFEST, 'algorithm "md5"'),
        (_manifest_with_config_digest("sha256:abcd"), OCI_MANIFEST, "64 hex characters, not 4"),
    ],
    ids=["malformed-json", "media-type", "digest-algorithm", "digest-length"],
)
def test_bad_manifests_name_the_url(
    proxy: FaultProxy,
    repo_name: str,
    content: bytes,
    content_type: str,
    message: str,
) -> None:
    proxy.add(Fault.body(content, content_type=content_type), "GET", MANIFEST)
    with pytest.raises(exc.InvalidResponseError) as ei:
        oci.get_manifest_and_config(f"{proxy.repo_url(repo_name)}:t", client=client())
    assert message in str(ei.value)
    assert f"http://{proxy.host}/v2/{repo_name}/manifests/t" in str(ei.value)
    assert proxy.requests == 1


def test_size_limits(proxy: FaultProxy, registry: Registry, repo_name: str) -> None:
    """Oversized manifests, tag lists and error bodies are refused without reading them:
    the proxy offers 256 MiB and gets to send a small part of it."""
    seed_image(registry, repo_name)
    ref = proxy.repo_url(repo_name)
    big = 256 * 1024 * 1024
    # A manifest over 4 MiB: refused on its Content-Length, or while streaming.
    proxy.add(Fault.generated(5 * 1024 * 1024), "GET", MANIFEST)
    with pytest.raises(exc.InvalidResponseError, match="exceeds the limit of 4194304 bytes"):
        oci.get_manifest_and_config(f"{ref}:t", client=client())
    proxy.add(Fault.generated(big, no_length=True), "GET", MANIFEST)
    with pytest.raises(exc.InvalidResponseError, match="exceeds the limit of 4194304 bytes"):
        oci.get_manifest_and_config(f"{ref}:t", client=client())
    # A tag list over 16 MiB.
    proxy.add(Fault.generated(big, content_type=JSON, no_length=True), "GET", TAGS)
    with pytest.raises(exc.InvalidResponseError, match="exceeds the limit of 16777216 bytes"):
        oci.list_tags(ref, client=client())
    # An error body: the first 64 KiB are read, then the connection is dropped.
    proxy.add(Fault.generated(big, code=400, content_type=JSON, no_length=True), "HEAD", BLOB)
    with pytest.raises(exc.RegistryError) as ei:
        oci.blob_exists(ref, sha(b"x"), client=client())
    assert ei.value.status == 400
    for rec in proxy.log:
        assert rec.sent < 64 * 1024 * 1024, rec
    # A manifest over 4 MiB is not even sent.
    huge = {"mediaType": OCI_MANIFEST, "schemaVersion": 2, "x": "a" * (4 * 1024 * 1024)}
    with pytest.raises(exc.InvalidArgumentError, match="exceeds 4194304"):
        oci.upload_manifest(f"{ref}:huge", huge, client=client())
    assert proxy.count("PUT") == 0


def test_token_response_limit(proxy: FaultProxy, repo_name: str) -> None:
    realm = f"http://{proxy.host}/token"
    challenge = f'Bearer realm="{realm}",service="faults"'
    proxy.add(Fault.generated(2 * 1024 * 1024, content_type=JSON), "GET", r"^/token", times=None)
    proxy.add(
        Fault.respond(401, headers={"WWW-Authenticate": challenge}), "GET", r"^/v2/", times=None
    )
    with pytest.raises(exc.InvalidResponseError, match="exceeds 1048576 bytes"):
        oci.list_tags(proxy.repo_url(repo_name), client=client())
    assert proxy.count("GET", r"^/token") == 1


@pytest.mark.parametrize("other_path", [False, True], ids=["same-path", "other-path"])
def test_redirects(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path, other_path: bool
) -> None:
    manifest, layer = seed_image(registry, repo_name)
    ref = proxy.repo_url(repo_name)
    proxy.add(Fault.redirect(307, other_path=other_path), "GET", MANIFEST)
    proxy.add(Fault.redirect(307, other_path=other_path), "GET", BLOB)
    m, _ = oci.get_manifest_and_config(f"{ref}:t", client=client())
    assert m == manifest
    assert oci.fetch_blob(ref, manifest["layers"][0]["digest"], tmp_path / "l") == len(layer)
    assert [r.status for r in proxy.records("GET", MANIFEST)] == [307, 200]
    # The config (redirected), then the layer.
    assert [r.status for r in proxy.records("GET", BLOB)] == [307, 200, 200]


# -- uploads: resumed in their session, lost replies, chunks, BLOB_UNKNOWN -----------------


@pytest.mark.parametrize("fault", ["502", "drop"])
def test_failed_upload_continues_in_its_session(
    proxy: FaultProxy, registry: Registry, repo_name: str, fault: str
) -> None:
    f = Fault.respond(502) if fault == "502" else Fault.drop()
    proxy.add(f, "PUT", UPLOAD_PUT)
    data = os.urandom(100_000)
    assert oci.upload_blob(proxy.repo_url(repo_name), data, client=client()) == (sha(data), True)
    # The session is asked how far it got (GET), then the PUT goes again to the same session.
    assert (proxy.count("POST", UPLOADS), proxy.count("PUT", UPLOAD_PUT)) == (1, 2)
    assert proxy.count("GET", r"/blobs/uploads/.") == 1
    puts = [r.path.split("?")[0] for r in proxy.records("PUT", UPLOAD_PUT)]
    assert puts[0] == puts[1]
    assert registry.get_blob(repo_name, sha(data)) == data


def test_lost_upload_reply(proxy: FaultProxy, registry: Registry, repo_name: str) -> None:
    """The registry stored the blob but its answer was lost: the session is gone, a HEAD
    finds the blob, nothing is uploaded again."""
    proxy.add(Fault.respond(502, forward=True), "PUT", UPLOAD_PUT)
    data = os.urandom(100_000)
    assert oci.upload_blob(proxy.repo_url(repo_name), data, client=client()) == (sha(data), True)
    assert (proxy.count("POST", UPLOADS), proxy.count("PUT", UPLOAD_PUT)) == (1, 1)
    assert proxy.count("GET", r"/blobs/uploads/.") == 1  # the session: gone (404)
    assert proxy.count("HEAD", BLOB) == 2  # the existence check, then the lost-reply check
    assert registry.get_blob(repo_name, sha(data)) == data


def test_chunked_upload_with_chunk_min_length(
    make_proxy: Callable[..., FaultProxy], registry: Registry, repo_name: str
) -> None:
    proxy = make_proxy(max_body=300 * 1024, chunk_min_length=256 * 1024)
    data = os.urandom(1_000_000)
    assert oci.upload_blob(proxy.repo_url(repo_name), data, client=client()) == (sha(data), True)
    assert proxy.faults["too_large"] == 1  # the monolithic PUT
    patches = proxy.records("PATCH")
    assert [p.headers["content-range"] for p in patches] == [
        "0-262143", "262144-524287", "524288-786431", "786432-999999",
    ]  # fmt: skip
    assert [p.status for p in patches] == [202] * 4
    assert registry.get_blob(repo_name, sha(data)) == data


def test_chunked_upload_halves_chunks(
    make_proxy: Callable[..., FaultProxy], registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    proxy = make_proxy(max_body=1024 * 1024)
    data = os.urandom(3_000_000)
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert oci.upload_blob(proxy.repo_url(repo_name), f, client=client()) == (sha(data), True)
    # PUT 3 MB, PATCH 3 MB (4 MiB chunk), PATCH 2 MiB: refused; then 1 MiB chunks.
    assert proxy.faults["too_large"] == 3
    sizes = [p.size for p in proxy.records("PATCH") if p.status == 202]
    assert sizes == [1048576, 1048576, 3_000_000 - 2 * 1048576]
    assert registry.get_blob(repo_name, sha(data)) == data


def make_prefix(root: Path, name: str, size: int) -> Path:
    prefix = root / "store" / f"{name}-1.0-{name}hash"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "data.bin").write_bytes(os.urandom(size))
    (prefix / ".spack").mkdir()
    (prefix / ".spack" / "spec.json").write_text("{}")
    return prefix


def make_tarball(path: Path, files: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return sha(buf.getvalue())


def test_push_prefix_to_a_size_capped_registry(
    make_proxy: Callable[..., FaultProxy], registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """The streamed PATCH is refused (413): the layer goes through a temp file, in chunks."""
    proxy = make_proxy(max_body=512 * 1024)
    prefix = make_prefix(tmp_path, "big", 2_000_000)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    [r] = oci.push(
        proxy.repo_url(repo_name), [oci.PushItem("big.spack", prefix=prefix)],
        tmpdir=tmp, client=client(),
    )  # fmt: skip
    assert r.status == "pushed", r.error
    assert r.digest and registry.blob_exists(repo_name, r.digest)
    assert proxy.faults["too_large"] >= 2  # the streamed PATCH and the monolithic PUT
    assert leftovers(tmp) == []


def _delete_referenced_blobs(registry: Registry, repo: str) -> Callable[[Request], None]:
    """A proxy callback for a manifest PUT: delete every blob the manifest refers to."""

    def delete(req: Request) -> None:
        m = json.loads(req.body)
        for d in [m["config"]["digest"], *(layer["digest"] for layer in m["layers"])]:
            if registry.blob_exists(repo, d):
                registry.delete_blob(repo, d)

    return delete


def test_blob_unknown_at_manifest_put_reuploads(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """Blobs vanish between their upload and the manifest PUT (a registry GC): the push
    uploads them again (the tarball, the prefix re-archived, the config) and succeeds."""
    tar_digest = make_tarball(tmp_path / "t.tar.gz", {"opt/t/file": b"t"})
    prefix = make_prefix(tmp_path, "p", 100_000)
    for tag in ("tb.spack", "px.spack"):
        proxy.add(Fault.call(_delete_referenced_blobs(registry, repo_name)), "PUT", f"/{tag}$")
    items = [
        oci.PushItem("tb.spack", key="tb", tarball=tmp_path / "t.tar.gz"),
        oci.PushItem("px.spack", key="px", prefix=prefix),
    ]
    results = oci.push(proxy.repo_url(repo_name), items, client=client())
    assert [r.status for r in results] == ["pushed", "pushed"], [r.error for r in results]
    assert proxy.count("PUT", r"/manifests/tb.spack$") == 2
    assert proxy.count("PUT", r"/manifests/px.spack$") == 2
    assert proxy.faults["call"] == 2
    assert results[0].digest == tar_digest
    for tag in ("tb.spack", "px.spack"):
        manifest, _ = oci.get_manifest_and_config(registry.repo_url(repo_name) + f":{tag}")
        for layer in manifest["layers"]:
            out = tmp_path / layer["digest"]
            assert oci.fetch_blob(registry.repo_url(repo_name), layer["digest"], out) > 0


def test_blob_unknown_not_recreatable_names_the_digest(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    ref = proxy.repo_url(repo_name)
    tar_digest = make_tarball(tmp_path / "x.tar.gz", {"opt/x/file": b"x"})
    [r] = oci.push(ref, [oci.PushItem("x.spack", key="x", tarball=tmp_path / "x.tar.gz")])
    assert r.status == "pushed" and r.digest == tar_digest and r.diff_id and r.size
    # A later push refers to that layer by digest only (known_layers) and it vanishes.
    proxy.add(Fault.call(_delete_referenced_blobs(registry, repo_name)), "PUT", "/app$")
    [app] = oci.push(
        ref, [oci.PushItem("app", layers=["x"])],
        known_layers={"x": (tar_digest, r.diff_id, r.size)}, client=client(),
    )  # fmt: skip
    assert app.status == "failed"
    err = app.error
    assert isinstance(err, exc.RegistryError) and "MANIFEST_BLOB_UNKNOWN" in err.codes
    assert f"{tar_digest} (layer 1 of 1) cannot be uploaded again" in str(err)
    assert "app" not in oci.list_tags(registry.repo_url(repo_name))
    # upload_manifest says which blob the registry lacks.
    manifest, _ = oci.get_manifest_and_config(registry.repo_url(repo_name) + ":x.spack")
    with pytest.raises(exc.RegistryError) as ei:
        oci.upload_manifest(f"{ref}:again", manifest, client=client())
    assert f"{tar_digest} (layer 1 of 1)" in str(ei.value)


# -- concurrency and threads ---------------------------------------------------------------


def test_concurrency_is_bounded_per_registry(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    blobs = [os.urandom(100_000) for _ in range(6)]
    digests = [seed(registry, repo_name, b) for b in blobs]
    proxy.add(Fault.slow(1_000_000), "GET", BLOB, times=None)
    ref = proxy.repo_url(repo_name)
    results = oci.fetch_blobs(
        [(ref, d, tmp_path / d[7:]) for d in digests],
        concurrency=6,
        client=client(max_concurrency=2),
    )
    assert all(r.ok for r in results), [r.error for r in results]
    assert proxy.max_inflight == 2


def test_many_python_threads(
    proxy: FaultProxy, registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    """Eight threads call the engine at once (shared and default clients), through random
    503s: all finish, nothing deadlocks."""
    proxy.add(Fault.respond(503), times=None, probability=0.1)
    shared = client(retries=10)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            ref = proxy.repo_url(new_repo(f"t{n}"))
            c = shared if n % 2 else client(retries=10)
            for i in range(5):
                data = os.urandom(20_000 + i)
                d, _ = oci.upload_blob(ref, data, client=c)
                dest = tmp_path / f"{n}-{i}"
                oci.fetch_blob(ref, d, dest, client=c)
                assert dest.read_bytes() == data
                assert oci.blob_exists(ref, d, client=c)
            oci.list_tags(ref, client=c)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads did not finish: deadlock?"
    assert errors == []
    assert proxy.faults["status"] > 0
