"""The Python API against a real registry (docker-registry on loopback)."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from faultproxy import FaultProxy
from registry import Registry
from spack_oci_rs import exceptions as exc


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tarball(path: Path, files: dict[str, bytes]) -> tuple[str, str]:
    """A .tar.gz; returns (compressed digest, uncompressed digest)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    path.write_bytes(gz)
    return sha(gz), sha(raw)


def make_prefix(root: Path, name: str, size: int = 1000) -> Path:
    prefix = root / "store" / f"{name}-1.0-{name}hash"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "bin" / name).write_text(f"#!/bin/sh\necho {prefix}\n")
    os.chmod(prefix / "bin" / name, 0o755)
    (prefix / "lib" / "data.bin").write_bytes(os.urandom(size))
    (prefix / "lib" / "link").symlink_to(prefix / "bin" / name)
    (prefix / ".spack").mkdir()
    (prefix / ".spack" / "spec.json").write_text("{}")
    return prefix


def spec_item(tag: str, key: str, **kw: Any) -> oci.PushItem:
    extra = {
        "spec": {"_meta": {"version": 5}, "nodes": [{"name": key}]},
        "buildcache_layout_version": 2,
        "binary_cache_checksum": None,
        "archive_size": None,
        "archive_timestamp": "2026-11-27T00:00:00+00:00",
        "archive_compression": "gzip",
    }
    return oci.PushItem(
        tag,
        key=key,
        extra_config=extra,
        annotations={"org.opencontainers.image.description": key},
        **kw,
    )


def test_reference_parsing_and_tags() -> None:
    r = oci.parse_reference("oci+http://127.0.0.1:5000/My/Cache")
    assert r == {
        "scheme": "http",
        "domain": "127.0.0.1:5000",
        "name": "my/cache",
        "tag": "latest",
        "digest": None,
    }
    assert oci.parse_reference("ubuntu:24.04")["name"] == "library/ubuntu"
    assert oci.default_tag("zlib", "1.3", "abc") == "zlib-1.3-abc.spack"
    assert oci.ensure_valid_tag("a+b") == "a_b"
    with pytest.raises(exc.InvalidReferenceError, match="not a ref"):
        oci.list_tags("not a ref")
    with pytest.raises(ValueError):  # InvalidReferenceError is a ValueError
        oci.list_tags("s3://bucket/x")
    with pytest.raises(exc.InvalidDigestError, match="md5"):
        oci.blob_exists("oci+http://127.0.0.1:1/r", "md5:abc")


def test_blobs(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    ref = registry.repo_url(repo_name)
    data = b"some blob bytes"
    digest, uploaded = oci.upload_blob(ref, data)
    assert (digest, uploaded) == (sha(data), True)
    assert oci.upload_blob(ref, data) == (digest, False)
    assert oci.blob_exists(ref, digest)
    f = tmp_path / "file.bin"
    f.write_bytes(os.urandom(2_000_000))
    fd, up = oci.upload_blob(ref, f)
    assert up and fd == sha(f.read_bytes())

    dest = tmp_path / "out" / "blob"
    dest.parent.mkdir()
    assert oci.fetch_blob(ref, fd, dest) == 2_000_000
    assert dest.read_bytes() == f.read_bytes()

    missing = sha(b"missing")
    with pytest.raises(exc.NotFoundError) as ei:
        oci.fetch_blob(ref, missing, tmp_path / "out" / "missing")
    assert missing in str(ei.value) and repo_name in str(ei.value)
    assert ei.value.status == 404 and "BLOB_UNKNOWN" in ei.value.codes
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob"]

    results = oci.fetch_blobs(
        [
            (ref, digest, tmp_path / "out" / "a"),
            (ref, missing, tmp_path / "out" / "b"),
            (ref, "sha256:zz", tmp_path / "out" / "c"),
        ],
        concurrency=4,
    )
    assert [r.ok for r in results] == [True, False, False]
    assert results[0].size == len(data)
    assert isinstance(results[1].error, exc.NotFoundError)
    assert isinstance(results[2].error, exc.InvalidDigestError)
    assert (tmp_path / "out" / "a").read_bytes() == data
    assert not (tmp_path / "out" / "b").exists()

    # Wrong digest given for the bytes: the registry refuses; nothing is stored.
    with pytest.raises(exc.RegistryError) as ei2:
        oci.upload_blob(ref, b"abc", sha(b"abd"), force=True)
    assert ei2.value.status == 400


def test_manifests_and_tags(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    cfg, _ = oci.upload_blob(ref, b'{"architecture":"amd64","os":"linux"}')
    manifest = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cfg,
            "size": 37,
        },
        "layers": [],
    }
    for i in range(5):
        d, size = oci.upload_manifest(f"{ref}:t{i}", manifest)
    compact = json.dumps(manifest, separators=(",", ":")).encode()
    assert (d, size) == (sha(compact), len(compact))
    assert oci.list_tags(ref) == [f"t{i}" for i in range(5)]
    m, c = oci.get_manifest_and_config(f"{ref}:t0")
    assert m == manifest and c == {"architecture": "amd64", "os": "linux"}
    with pytest.raises(exc.NotFoundError, match="nope"):
        oci.get_manifest_and_config(f"{ref}:nope")
    assert oci.list_tags(registry.repo_url(repo_name + "-none")) == []


def test_push_tarballs_index_and_skopeo(
    registry: Registry, repo_name: str, tmp_path: Path, skopeo_available: None
) -> None:
    ref = registry.repo_url(repo_name)
    dep_d, dep_diff = make_tarball(tmp_path / "dep.tar.gz", {"opt/dep/lib": b"dep"})
    root_d, root_diff = make_tarball(tmp_path / "root.tar.gz", {"opt/root/bin": b"root"})
    items = [
        spec_item("dep-1.0-aaa.spack", "aaa", tarball=tmp_path / "dep.tar.gz"),
        spec_item(
            "root-1.0-bbb.spack", "bbb", tarball=tmp_path / "root.tar.gz", layers=["aaa", "bbb"]
        ),
        spec_item("gone-1.0-ccc.spack", "ccc", tarball=tmp_path / "missing.tar.gz"),
    ]
    events: list[str] = []
    results = oci.push(ref, items, jobs=2, progress=lambda ev, info: events.append(ev))
    assert [r.status for r in results] == ["pushed", "pushed", "failed"]
    assert (results[0].digest, results[0].diff_id) == (dep_d, dep_diff)
    assert (results[1].digest, results[1].diff_id) == (root_d, root_diff)
    assert isinstance(results[2].error, exc.LocalFileError)
    assert "missing.tar.gz" in str(results[2].error)
    assert events[0] == "planned" and events.count("manifest_done") == 2
    assert "gone-1.0-ccc.spack" not in oci.list_tags(ref)

    manifest, config = oci.get_manifest_and_config(f"{ref}:root-1.0-bbb.spack")
    assert [layer["digest"] for layer in manifest["layers"]] == [dep_d, root_d]
    assert config["rootfs"]["diff_ids"] == [dep_diff, root_diff]
    assert config["binary_cache_checksum"] == {"hash_algorithm": "sha256", "hash": root_d[7:]}
    assert config["archive_size"] == (tmp_path / "root.tar.gz").stat().st_size
    assert list(config) == [
        "architecture", "os", "rootfs", "config", "spec", "buildcache_layout_version",
        "binary_cache_checksum", "archive_size", "archive_timestamp", "archive_compression",
    ]  # fmt: skip
    assert manifest["annotations"] == {"org.opencontainers.image.description": "bbb"}

    # What the registry stores is byte-for-byte what Spack would have written.
    raw = registry.get_manifest(repo_name, "root-1.0-bbb.spack").body
    assert raw == json.dumps(manifest, separators=(",", ":")).encode()
    cfg_raw = registry.get_blob(repo_name, manifest["config"]["digest"])
    assert cfg_raw == json.dumps(config, separators=(",", ":")).encode()

    # skopeo reads and copies it; the layers verify.
    info = registry.inspect(repo_name, "root-1.0-bbb.spack")
    assert info["Layers"] == [dep_d, root_d]
    out = tmp_path / "layout"
    registry.skopeo("copy", registry.docker_ref(repo_name, "root-1.0-bbb.spack"), f"oci:{out}:x")
    for d in (dep_d, root_d):
        assert sha((out / "blobs" / "sha256" / d[7:]).read_bytes()) == d

    # No-op re-push: skipped after one tag listing (their layers are not looked up: nothing
    # stacks them); the failed one fails again.
    again = oci.push(ref, items)
    assert [r.status for r in again] == ["skipped", "skipped", "failed"]
    assert again[1].digest is None and not again[1].uploaded
    # A new image stacking an existing one: that one's layer is looked up.
    make_tarball(tmp_path / "top.tar.gz", {"opt/top/bin": b"top"})
    top = spec_item(
        "top-1.0-ddd.spack", "ddd", tarball=tmp_path / "top.tar.gz", layers=["aaa", "ddd"]
    )
    more = oci.push(ref, [items[0], top])
    assert [r.status for r in more] == ["skipped", "pushed"] and more[0].digest == dep_d

    # Index.
    idx = oci.build_index(ref)
    assert idx.spec_tags == 3 and idx.skipped == []
    names = sorted(t for t, _, _ in idx.configs)
    assert names == ["dep-1.0-aaa.spack", "root-1.0-bbb.spack", "top-1.0-ddd.spack"]
    assert all("spec" in c for _, _, c in idx.configs)
    index_json = json.dumps({"database": {"installs": {}}}).encode()
    oci.upload_index(ref, index_json)
    fetched = oci.fetch_index(ref)
    assert fetched is not None and fetched == (sha(index_json), index_json)
    assert oci.fetch_index(ref, known=sha(index_json)) == (sha(index_json), None)
    m, c = oci.get_manifest_and_config(f"{ref}:index.spack")
    assert c == {} and m["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert oci.build_index(ref).spec_tags == 3


def test_push_with_the_callers_tag_listing(
    make_proxy: Callable[..., FaultProxy], repo_name: str, tmp_path: Path
) -> None:
    """``tags=``: the caller's listing replaces the push's own. Items it names are skipped
    without a request; ``tags=[]`` pushes everything and lists nothing."""
    proxy = make_proxy()
    ref = proxy.repo_url(repo_name)
    make_tarball(tmp_path / "a.tar.gz", {"opt/a/lib": b"a"})
    items = [spec_item("a-1.0-aaa.spack", "aaa", tarball=tmp_path / "a.tar.gz")]
    first = oci.push(ref, items, tags=[])
    assert [r.status for r in first] == ["pushed"] and proxy.count(path="/tags/list") == 0
    before = proxy.requests
    again = oci.push(ref, items, tags=["a-1.0-aaa.spack", "other"])
    assert [r.status for r in again] == ["skipped"] and proxy.requests == before
    forced = oci.push(ref, items, tags=["a-1.0-aaa.spack"], force=True)
    assert [r.status for r in forced] == ["pushed"] and proxy.count(path="/tags/list") == 0


def test_push_prefix_streams_spack_tarball(
    registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    ref = registry.repo_url(repo_name)
    a = make_prefix(tmp_path, "a")
    b = make_prefix(tmp_path, "b", size=12_000_000)  # b streams, a is small
    store = str(tmp_path / "store")
    dumped: list[dict[str, Any]] = []

    def dump(d: dict[str, Any]) -> bytes:
        dumped.append(d)
        return json.dumps(d).encode()

    buildinfo = {"buildpath": store, "relative_prefix": "x", "hardlinks_deduped": True}
    items = [
        spec_item(
            f"{p.name}.spack",
            p.name,
            prefix=p,
            prefixes_to_relocate=[str(p), store],
            buildinfo=dict(buildinfo),
        )
        for p in (a, b)
    ]
    # The file contents the tarballs read: what the byte events count.
    contents = sum(
        f.stat().st_size
        for p in (a, b)
        for f in p.rglob("*")
        if f.is_file() and not f.is_symlink()
    )
    for stream in (True, False):
        repo = ref + ("-stream" if stream else "-file")
        events: list[tuple[str, dict[str, Any]]] = []
        results = oci.push(
            repo,
            items,
            buildinfo_dump=dump,
            stream_layers=stream,
            progress=lambda ev, info, seen=events: seen.append((ev, info)),
        )
        assert [r.status for r in results] == ["pushed", "pushed"], [r.error for r in results]
        done = [(i["done"], i["total"]) for e, i in events if e == "bytes"]
        assert len(done) >= 2 and done[-1] == (contents, contents), done
        assert all(x[0] <= y[0] for x, y in itertools.pairwise(done)), done
        assert all(d <= t for d, t in done) and done[0][1] == contents, done
        # The bytes are counted while the layers are made, not after them.
        kinds = [e for e, _ in events]
        assert kinds.index("bytes") < kinds.index("layer_done")
        for r, p in zip(results, (a, b), strict=False):
            assert r.relocate_textfiles == ["bin/" + p.name[0]]
            assert r.relocate_links == ["lib/link"]
            blob = tmp_path / f"{r.key}-{stream}.tar.gz"
            assert r.digest is not None
            oci.fetch_blob(repo, r.digest, blob)
            with tarfile.open(blob) as tar:
                names = tar.getnames()
            assert str(p / "bin" / p.name[0]).lstrip("/") in names
            assert names[-1] == str(p / ".spack" / "binary_distribution").lstrip("/")
    # Both ways give the same bytes (reproducible tarballs).
    assert (tmp_path / "a-1.0-ahash-True.tar.gz").read_bytes() == (
        tmp_path / "a-1.0-ahash-False.tar.gz"
    ).read_bytes()
    assert list(dumped[0]) == [
        "buildpath", "relative_prefix", "hardlinks_deduped",
        "relocate_binaries", "relocate_links", "relocate_textfiles",
    ]  # fmt: skip

    # A missing prefix fails that item only, with the path in the message.
    missing = spec_item("missing.spack", "m", prefix=tmp_path / "nope")
    results = oci.push(ref + "-bad", [missing, items[0]])
    assert [r.status for r in results] == ["failed", "pushed"]
    assert str(tmp_path / "nope") in str(results[0].error)
    assert oci.list_tags(ref + "-bad") == [items[0].tag]


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_push_with_base_image(
    registry: Registry, new_repo: Any, tmp_path: Path, fmt: str, skopeo_available: None
) -> None:
    base = registry.push_base_image(new_repo("base"), "1", format=fmt)  # type: ignore[arg-type]
    base_ref = f"{registry.url}/{base.repo}:{base.tag}"
    target = new_repo("cache")
    ref = registry.repo_url(target)
    d, diff = make_tarball(tmp_path / "pkg.tar.gz", {"opt/pkg/bin/tool": b"tool"})
    item = spec_item("pkg-1.0-x.spack", "x", tarball=tmp_path / "pkg.tar.gz")
    item_env = oci.PushItem(
        "app", key="app", layers=["x"], env=["PATH=/opt/pkg/bin:/bin", "FOO=bar"]
    )
    results = oci.push(ref, [item], base_image=base_ref)
    assert results[0].status == "pushed", results[0].error
    tagged = oci.push(
        ref,
        [item_env],
        base_image=base_ref,
        known_layers={"x": (d, diff, (tmp_path / "pkg.tar.gz").stat().st_size)},
    )
    assert tagged[0].status == "pushed", tagged[0].error

    manifest, config = oci.get_manifest_and_config(f"{ref}:pkg-1.0-x.spack")
    assert manifest["mediaType"] == base.media_type
    assert [layer["digest"] for layer in manifest["layers"]] == [*base.layer_digests, d]
    assert config["rootfs"]["diff_ids"] == [*base.diff_ids, diff]
    assert config["config"]["Cmd"] == ["/bin/sh"]
    if fmt == "v2s2":
        assert manifest["layers"][-1]["mediaType"] == (
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        )
        assert "annotations" not in manifest
    else:
        assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert "annotations" in manifest
    # Base layers were copied (mounted) into the target repository.
    for digest in base.layer_digests:
        assert registry.blob_exists(target, digest)
    _, app_config = oci.get_manifest_and_config(f"{ref}:app")
    assert app_config["config"]["Env"] == ["PATH=/opt/pkg/bin:/bin", "FOO=bar"]
    # A runnable image as far as real clients are concerned.
    out = tmp_path / f"layout-{fmt}"
    registry.skopeo("copy", registry.docker_ref(target, "pkg-1.0-x.spack"), f"oci:{out}:x")
    info = registry.inspect(target, "app")
    assert info["Layers"][-1] == d


def test_tls(tls_registry: Registry, repo_name: str) -> None:
    ref = tls_registry.repo_url(repo_name)
    assert ref.startswith("oci://")
    client = oci.Client(ca_certs=[str(tls_registry.ca_file)])
    assert oci.upload_blob(ref, b"x", client=client)[1]
    with pytest.raises(exc.TransportError, match="ssl_certs"):
        oci.list_tags(ref, client=oci.Client(retries=1))
    insecure = oci.Client(verify_ssl=False)
    assert oci.blob_exists(ref, sha(b"x"), client=insecure)
    # A directory of CA files works too (Spack's ssl_certs may be a directory).
    assert tls_registry.ca_file is not None
    assert oci.blob_exists(
        ref, sha(b"x"), client=oci.Client(ca_certs=[tls_registry.ca_file.parent])
    )


def test_basic_auth(auth_registry: Registry, repo_name: str) -> None:
    ref = auth_registry.repo_url(repo_name)
    assert auth_registry.username and auth_registry.password
    ca = [str(auth_registry.ca_file)]
    good = oci.Client(ca_certs=ca, credentials={auth_registry.host: (auth_registry.username, "x")})
    assert auth_registry.password not in repr(good)
    good = oci.Client(
        ca_certs=ca,
        credentials={auth_registry.host: (auth_registry.username, auth_registry.password)},
    )
    assert oci.upload_blob(ref, b"auth", client=good)[1]
    with pytest.raises(exc.AuthenticationError) as ei:
        oci.list_tags(ref, client=oci.Client(ca_certs=ca))
    msg = str(ei.value)
    assert auth_registry.host in msg and "--oci-username-variable" in msg
    wrong = oci.Client(ca_certs=ca, credentials={auth_registry.host: ("spack", "wrong-pw")})
    with pytest.raises(exc.AuthenticationError) as ei:
        oci.list_tags(ref, client=wrong)
    assert "wrong-pw" not in str(ei.value) and auth_registry.password not in str(ei.value)
    assert ei.value.status == 401


def test_registry_down(tmp_path: Path) -> None:
    # A port nothing listens on.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ref = f"oci+http://127.0.0.1:{port}/repo"
    with pytest.raises(exc.TransportError, match=f"127.0.0.1:{port}"):
        oci.list_tags(ref, client=oci.Client(retries=2))
    results = oci.push(
        ref,
        [oci.PushItem("t", tarball=tmp_path / "x.tar.gz")],
        client=oci.Client(retries=1),
    )
    assert results[0].status == "failed"


def test_client_validation() -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        oci.Client(connect_timeout=0)
    # Bad arguments are InvalidArgumentError (an OciError and a ValueError), never a raw
    # TypeError.
    with pytest.raises(oci.InvalidArgumentError, match="tuple"):
        oci.Client(credentials={"h": "user:pass"})  # type: ignore[dict-item]
    with pytest.raises(oci.LocalFileError, match="no-such-ca"):
        oci.list_tags("oci://127.0.0.1:1/r", client=oci.Client(ca_certs=["/no-such-ca.pem"]))
    with pytest.raises(ValueError, match="not both"):
        oci.PushItem("t", tarball="a", prefix="b")
    with pytest.raises(exc.InvalidReferenceError, match="tag"):
        oci.PushItem("bad tag")


def test_fork_uses_a_fresh_runtime(registry: Registry, repo_name: str) -> None:
    ref = registry.repo_url(repo_name)
    oci.upload_blob(ref, b"before fork")
    code = (
        "import os, sys, spack_oci_rs as o\n"
        f"ref = {ref!r}\n"
        "o.upload_blob(ref, b'parent')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    parent = o.upload_blob(ref, b'parent')[0]\n"
        "    ok = o.upload_blob(ref, b'child')[1] and o.blob_exists(ref, parent)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert o.list_tags(ref) == []\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr


def test_fast_compression(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    """``compression="fast"``: the same tar (diff_id) in other gzip bytes that any reader
    takes; the default stays Spack's bytes."""
    ref = registry.repo_url(repo_name)
    p = make_prefix(tmp_path, "c", size=10_000_000)
    text = p / "share" / "text.txt"
    text.parent.mkdir()
    text.write_text("lorem ipsum dolor sit amet\n" * 400_000)
    spack_mode = oci.push(ref, [oci.PushItem("c-spack", prefix=p)])[0]
    fast = oci.push(ref, [oci.PushItem("c-fast", prefix=p)], compression="fast")[0]
    assert spack_mode.status == fast.status == "pushed"
    assert fast.diff_id == spack_mode.diff_id
    assert fast.digest != spack_mode.digest
    assert fast.size is not None and spack_mode.size is not None
    assert abs(fast.size / spack_mode.size - 1) < 0.05
    blob = tmp_path / "fast.tar.gz"
    oci.fetch_blob(ref, fast.digest or "", blob)
    with tarfile.open(blob) as tar:
        names = tar.getnames()
    assert str(text).lstrip("/") in names
    with pytest.raises(oci.InvalidArgumentError, match="compression"):
        oci.push(ref, [oci.PushItem("x", prefix=p)], compression="zstd")


def test_client_defaults_live_in_one_place() -> None:
    d = oci.Client.DEFAULTS
    assert set(d) == {
        "verify_ssl", "connect_timeout", "read_timeout", "retries", "max_concurrency",
        "retry_budget", "retry_backoff",
    }  # fmt: skip
    default = repr(oci.Client())
    assert f"retries={d['retries']}" in default
    assert f"connect_timeout={d['connect_timeout']}" in default
    assert repr(oci.Client(retries=None, connect_timeout=None)) == default
    assert "retries=2" in repr(oci.Client(retries=2))
    for bad in ({"connect_timeout": 0.0}, {"retry_budget": -1.0}, {"read_timeout": float("nan")}):
        with pytest.raises(oci.InvalidArgumentError, match="must be positive"):
            oci.Client(**bad)  # type: ignore[arg-type]
