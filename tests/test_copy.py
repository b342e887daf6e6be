"""``copy`` (the engine's ``copy`` and ``spack-oci-rs copy``) between real registries: one
plain HTTP, one HTTPS with basic auth; manifests compared byte for byte with skopeo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from cli_run import run_cli
from faultproxy import Fault, FaultProxy, Rule
from registry import Registry, skopeo

TAGS = [
    "a-1.0-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.spack",
    "b-2.1-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.spack",
]
BASED = "c-3.0-cccccccccccccccccccccccccccccccc.spack"
INDEX = b'{"database":{"version":"8","installs":{}}}'


def make_cache(reg: Registry, repo: str, base_repo: str, tmp: Path) -> list[str]:
    """Three spec tags (one on a base image, which adds its layers) and an index."""
    ref = reg.repo_url(repo)
    items = []
    for tag in [*TAGS, BASED]:
        d = tmp / tag
        (d / "bin").mkdir(parents=True)
        (d / "bin" / "tool").write_bytes(os.urandom(200_000) + tag.encode())
        items.append(oci.PushItem(tag, prefix=d, prefixes_to_relocate=[str(d)]))
    reg.push_base_image(base_repo, "base")
    for plan, base in ((items[:2], None), (items[2:], reg.repo_url(base_repo) + ":base")):
        results = oci.push(ref, plan, base_image=base)
        assert all(r.status == "pushed" for r in results), [r.error for r in results]
    oci.upload_index(ref, INDEX)
    return sorted([*TAGS, BASED, "index.spack"])


def raw_manifest(reg: Registry, repo: str, tag: str) -> str:
    return skopeo("inspect", "--raw", *reg.skopeo_flags(), reg.docker_ref(repo, tag)).stdout


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**os.environ, **(env or {})}, timeout=300)


def uploads(log: str) -> list[str]:
    """The requests of an access log that write something."""
    found = re.findall(r'"(POST|PUT|PATCH) (\S+) HTTP', log)
    return [f"{m} {u}" for m, u in found]


@pytest.fixture
def auth_flags(auth_registry: Registry) -> tuple[list[str], dict[str, str]]:
    assert auth_registry.ca_file is not None and auth_registry.username is not None
    flags = ["--ca-cert", str(auth_registry.ca_file), "--username", auth_registry.username]
    flags += ["--password-env", "COPY_TEST_PASSWORD"]
    return flags, {"COPY_TEST_PASSWORD": str(auth_registry.password)}


def test_copy_to_tls_auth_registry_is_byte_identical_and_idempotent(
    registry: Registry,
    auth_registry: Registry,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    auth_flags: tuple[list[str], dict[str, str]],
    skopeo_available: None,
) -> None:
    src, base, dst = new_repo("src"), new_repo("base"), new_repo("dst")
    tags = make_cache(registry, src, base, tmp_path)
    flags, env = auth_flags
    args = ["copy", registry.repo_url(src), auth_registry.repo_url(dst), *flags]

    first = cli(*args, "--json", env=env)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert [t["tag"] for t in data["tags"]] == [*sorted([*TAGS, BASED]), "index.spack"]
    assert {t["status"] for t in data["tags"]} == {"copied"}
    assert data["summary"]["bytes_copied"] > 600_000
    assert sorted(auth_registry.list_tags(dst)) == tags
    for tag in tags:
        assert raw_manifest(auth_registry, dst, tag) == raw_manifest(registry, src, tag)
        mine = auth_registry.get_manifest(dst, tag)
        theirs = registry.get_manifest(src, tag)
        assert mine.body == theirs.body
        assert mine.headers["Content-Type"] == theirs.headers["Content-Type"]
    # The base image's layers came along: the image with them is complete at the destination.
    based = auth_registry.get_manifest(dst, BASED).json()
    assert len(based["layers"]) == 2
    assert all(auth_registry.blob_exists(dst, layer["digest"]) for layer in based["layers"])

    since = auth_registry.log_offset()
    second = cli(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert "0 copied, 4 unchanged, 0 failed" in second.stdout
    assert "nothing to upload" in second.stdout
    assert uploads(auth_registry.log(since)) == []


def test_same_registry_mounts(
    registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    src, base, dst = new_repo("src"), new_repo("base"), new_repo("dst")
    make_cache(registry, src, base, tmp_path)
    events: list[tuple[str, dict[str, Any]]] = []
    results = oci.copy(
        registry.repo_url(src),
        registry.repo_url(dst),
        tags=[TAGS[0]],
        progress=lambda e, i: events.append((e, i)),
    )
    (r,) = results
    assert r.status == "copied" and r.blobs_mounted == 2 and r.blobs_copied == 0
    assert r.bytes_copied == 0
    assert (
        "tag",
        {"tag": TAGS[0], "status": "copied", "bytes_copied": 0, "error": None},
    ) in events
    done = [i for e, i in events if e == "bytes"][-1]
    assert done["done"] == done["total"] > 0
    with pytest.raises(oci.InvalidArgumentError, match="onto itself"):
        oci.copy(registry.repo_url(src), registry.repo_url(src))
    with pytest.raises(oci.NotFoundError, match="does not exist"):
        oci.copy(registry.repo_url(new_repo("nothing")), registry.repo_url(dst))


def test_interrupted_copy_continues(
    registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    src, base, dst = new_repo("src"), new_repo("base"), new_repo("dst")
    make_cache(registry, src, base, tmp_path)
    client = oci.Client(retries=1)
    # The destination behind a proxy (another host:port, so blobs are streamed, not mounted).
    with FaultProxy(registry.host) as proxy:
        # Connections cut at the manifests of every tag after the first: the copy stops there.
        proxy.rules.append(
            Rule(Fault.drop(), method="PUT", path="/manifests/", skip=1, times=None)
        )
        target = proxy.repo_url(dst)
        first = oci.copy(registry.repo_url(src), target, client=client)
        assert [r.status for r in first].count("copied") == 1
        assert [r.status for r in first].count("failed") == 3  # two tags, and the index
        assert "other tag(s) of the copy failed" in str(first[-1].error)
        proxy.rules.clear()
        before = len(proxy.log)
        again = oci.copy(registry.repo_url(src), target, client=client)
        assert [r.status for r in again].count("unchanged") == 1
        assert [r.status for r in again].count("copied") == 3
        # Every blob of the tags arrived the first time: the rerun puts their manifests, and
        # the index (not tried the first time) with its two blobs.
        sent = [(rec.method, rec.path) for rec in list(proxy.log)[before:]]
        manifests = sorted(
            p.rsplit("/", 1)[-1] for m, p in sent if m == "PUT" and "/manifests/" in p
        )
        assert manifests == sorted([*[r.tag for r in first if r.status == "failed"]])
        assert len([m for m, _ in sent if m == "POST"]) == 2
        assert [m for m, _ in sent if m == "PATCH"] == []
        assert all(r.blobs_copied == 0 for r in again if r.tag != "index.spack")
        assert again[-1].tag == "index.spack" and again[-1].blobs_copied == 2


def test_tags_glob_and_spack_env(
    registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    src, base = new_repo("src"), new_repo("base")
    make_cache(registry, src, base, tmp_path)
    dst = new_repo("glob")
    out = cli("copy", registry.repo_url(src), registry.repo_url(dst), "--tags", "a-*")
    assert out.returncode == 0, out.stderr
    assert registry.list_tags(dst) == [TAGS[0]]
    assert "index     not copied" in out.stderr

    env = tmp_path / "env"
    env.mkdir()
    lock = {
        "_meta": {"lockfile-version": 6},
        "roots": [],
        "concrete_specs": {
            "b" * 32: {"name": "b", "version": "2.1", "hash": "b" * 32},
            "c" * 32: {"name": "c", "version": "3.0", "hash": "c" * 32},
            "e" * 32: {"name": "ext", "version": "1", "external": {"path": "/usr"}},
        },
    }
    (env / "spack.lock").write_text(json.dumps(lock))
    dst = new_repo("env")
    out = cli("copy", registry.repo_url(src), registry.repo_url(dst), "--spack-env", str(env))
    assert out.returncode == 0, out.stderr
    assert registry.list_tags(dst) == sorted([TAGS[1], BASED])

    # A spec of the environment missing from the cache: partial (exit 3).
    lock["concrete_specs"]["d" * 32] = {"name": "d", "version": "4", "hash": "d" * 32}
    (env / "spack.lock").write_text(json.dumps(lock))
    out = cli(
        "copy", registry.repo_url(src), registry.repo_url(new_repo("e")), "--spack-env", str(env)
    )
    assert out.returncode == 3, out.stderr
    assert "d-4-" + "d" * 32 + ".spack" in out.stderr and "no tag" in out.stderr


def test_progress_callbacks_and_aio(
    registry: Registry,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import spack_oci_rs.aio as aoci

    src, base = new_repo("src"), new_repo("base")
    make_cache(registry, src, base, tmp_path / "cache")
    ref = registry.repo_url(src)
    manifest, _ = oci.get_manifest_and_config(f"{ref}:{TAGS[0]}")
    blobs = [manifest["config"], *manifest["layers"]]
    seen: list[dict[str, Any]] = []
    out = tmp_path / "out"
    out.mkdir()
    requests = [(ref, b["digest"], out / b["digest"][7:]) for b in blobs]
    results = oci.fetch_blobs(requests, progress=lambda e, i: seen.append(i))
    assert all(r.ok for r in results)
    assert seen[-1]["done"] == sum(b["size"] for b in blobs)

    # A callback that raises is reported once and not called again; the work goes on.
    calls: list[str] = []

    def broken(event: str, info: dict[str, Any]) -> None:
        calls.append(event)
        raise RuntimeError("broken callback")

    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))
    copied = oci.copy(ref, registry.repo_url(new_repo("dst")), progress=broken)
    assert {r.status for r in copied} == {"copied"} and len(calls) == 1
    assert len(reported) == 1 and "broken callback" in str(reported[0])

    async def main() -> list[oci.CopyResult]:
        return await aoci.copy(ref, registry.repo_url(new_repo("aio")), tags=[TAGS[1]])

    again = asyncio.run(main())
    assert [(r.tag, r.status) for r in again] == [(TAGS[1], "copied")]


def test_image_index_copied_with_its_manifests(
    registry: Registry, tls_registry: Registry, new_repo: Callable[[str], str]
) -> None:
    src, dst = registry.repo_url(new_repo("src")), tls_registry.repo_url(new_repo("dst"))
    entries = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux"}).encode()
        layer = os.urandom(1000)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": oci.upload_blob(src, config)[0],
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": oci.upload_blob(src, layer)[0],
                    "size": len(layer),
                }
            ],
        }
        digest, size = oci.upload_manifest(src, manifest, tag=False)
        entries.append(
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }
    oci.upload_manifest(f"{src}:multi", index)
    assert tls_registry.ca_file is not None
    client = oci.Client(ca_certs=[tls_registry.ca_file])
    (r,) = oci.copy(src, dst, client=client)
    assert r.status == "copied" and r.blobs_copied == 4
    dst_repo = dst.rsplit("/", 1)[1]
    src_repo = src.rsplit("/", 1)[1]
    assert (
        tls_registry.get_manifest(dst_repo, "multi").body
        == registry.get_manifest(src_repo, "multi").body
    )
    for e in entries:
        assert tls_registry.manifest_exists(dst_repo, e["digest"])
    _, cfg = oci.get_manifest_and_config(f"{dst}:multi", "arm64", client=client)
    assert cfg["architecture"] == "arm64"
