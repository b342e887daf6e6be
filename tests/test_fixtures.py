"""The registry fixtures themselves, checked with urllib and skopeo only (no spack_oci_rs)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Registry,
    RegistryError,
    SkopeoError,
    make_oci_layout,
    sha256_digest,
    skopeo,
    unique_repo_name,
)


def test_plain_registry_answers(registry: Registry) -> None:
    assert registry.host.startswith("127.0.0.1:")
    assert registry.url == f"oci+http://{registry.host}"
    assert registry.base == f"http://{registry.host}"
    assert registry.repo_url("a/b") == f"oci+http://{registry.host}/a/b"
    assert registry.ca_file is None
    with urllib.request.urlopen(registry.base + "/v2/", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_tls_registry_needs_the_ca(tls_registry: Registry) -> None:
    reg = tls_registry
    assert reg.url == f"oci://{reg.host}"
    assert reg.repo_url("x") == f"oci://{reg.host}/x"
    assert reg.ca_file is not None and reg.ca_file.read_text().startswith("-----BEGIN")
    assert reg.cert_dir is not None and (reg.cert_dir / "ca.crt").is_file()
    # The CA file is alone in its directory (usable as a directory of CA files).
    assert [p.name for p in reg.ca_file.parent.iterdir()] == ["ca.pem"]
    ctx = ssl.create_default_context(cafile=str(reg.ca_file))
    for host in (reg.host, reg.host.replace("127.0.0.1", "localhost")):
        with urllib.request.urlopen(f"https://{host}/v2/", timeout=10, context=ctx) as r:
            assert r.status == 200
    # Without the test CA, verification fails.
    with pytest.raises(urllib.error.URLError) as exc:
        urllib.request.urlopen(reg.base + "/v2/", timeout=10, context=ssl.create_default_context())
    assert isinstance(exc.value.reason, ssl.SSLCertVerificationError)
    # And it speaks no plain HTTP.
    assert reg.request("GET", "/v2/").status == 200
    with pytest.raises(urllib.error.HTTPError) as http_exc:
        urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=10)
    assert http_exc.value.code == 400  # Go's answer to plain HTTP on a TLS port


def _get(reg: Registry, path: str, auth: str | None) -> int:
    req = urllib.request.Request(reg.base + path)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=reg.ssl_context()) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            assert e.headers["WWW-Authenticate"].startswith("Basic realm=")
        return e.code


def test_auth_registry_checks_passwords(auth_registry: Registry) -> None:
    reg = auth_registry
    assert reg.tls and reg.auth and reg.username and reg.password
    assert reg.url.startswith("oci://")
    assert _get(reg, "/v2/", None) == 401
    assert _get(reg, "/v2/", f"{reg.username}:{reg.password}") == 200
    assert _get(reg, "/v2/", f"{reg.username}:wrong-{reg.password}") == 401
    assert _get(reg, "/v2/", f"nobody:{reg.password}") == 401
    assert reg.request("GET", "/v2/").status == 200  # sends the credentials
    assert reg.request("GET", "/v2/", auth=False).status == 401


def test_repo_names_are_unique_and_valid(repo_name: str, new_repo: object) -> None:
    import re

    assert callable(new_repo)
    names = {repo_name, new_repo(""), new_repo("cache"), unique_repo_name("Weird Name!/Sub")}
    assert len(names) == 4
    component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
    for name in names:
        assert re.fullmatch(rf"{component}(?:/{component})*", name), name
    assert repo_name.startswith("test-repo-names-are-unique-and-valid-")


def test_oci_layout_is_valid(tmp_path: Path, skopeo_available: None) -> None:
    layout = make_oci_layout(tmp_path / "img", tag="v1", layers=[{"a/b.txt": b"b"}, {"c": b"c"}])
    index = json.loads((layout.path / "index.json").read_text())
    assert index["manifests"][0]["digest"] == layout.manifest_digest
    blob = layout.path / "blobs" / "sha256" / layout.manifest_digest.split(":")[1]
    assert sha256_digest(blob.read_bytes()) == layout.manifest_digest
    info = json.loads(skopeo("inspect", layout.skopeo_ref).stdout)
    assert info["Digest"] == layout.manifest_digest
    assert info["Layers"] == layout.layer_digests
    assert len(layout.diff_ids) == 2


@pytest.mark.parametrize(
    ("fmt", "manifest_type", "config_type", "layer_type"),
    [
        ("oci", OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
        ("v2s2", DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
    ],
)
def test_push_base_image(
    registry: Registry,
    repo_name: str,
    skopeo_available: None,
    fmt: str,
    manifest_type: str,
    config_type: str,
    layer_type: str,
) -> None:
    img = registry.push_base_image(repo_name, "1.0", format=fmt)  # type: ignore[arg-type]
    assert img.ref == f"{registry.host}/{repo_name}:1.0"
    assert img.media_type == manifest_type
    assert img.manifest["mediaType"] == manifest_type
    assert img.manifest["config"]["mediaType"] == config_type
    assert [layer["mediaType"] for layer in img.manifest["layers"]] == [layer_type]
    assert img.config["rootfs"]["diff_ids"] == img.diff_ids
    assert img.config["os"] == "linux" and img.config["architecture"] == "amd64"
    # skopeo sees the same image.
    info = registry.inspect(repo_name, "1.0")
    assert info["Digest"] == img.manifest_digest
    assert info["Layers"] == img.layer_digests
    assert registry.inspect(repo_name, "1.0", raw=True) == img.manifest
    # The HTTP API agrees.
    assert registry.list_tags(repo_name) == ["1.0"]
    assert registry.manifest_digest(repo_name, "1.0") == img.manifest_digest
    assert all(registry.blob_exists(repo_name, d) for d in img.layer_digests)
    assert sha256_digest(registry.get_blob(repo_name, img.config_digest)) == img.config_digest


def test_delete_manifest(registry: Registry, repo_name: str, skopeo_available: None) -> None:
    img = registry.push_base_image(repo_name, "gone")
    assert registry.manifest_exists(repo_name, "gone")
    assert registry.delete_manifest(repo_name, "gone") == img.manifest_digest
    assert not registry.manifest_exists(repo_name, "gone")
    assert not registry.manifest_exists(repo_name, img.manifest_digest)
    assert registry.list_tags(repo_name) == []
    with pytest.raises(RegistryError, match="HTTP 404"):
        registry.get_manifest(repo_name, img.manifest_digest)


def test_skopeo_over_tls_and_auth(
    tls_registry: Registry, auth_registry: Registry, repo_name: str, skopeo_available: None
) -> None:
    img = tls_registry.push_base_image(repo_name, format="v2s2")
    assert tls_registry.inspect(repo_name)["Digest"] == img.manifest_digest
    # Registry-to-registry copy: src flags for one, dest flags for the other.
    src = tls_registry.skopeo_flags("src")
    auth_registry.skopeo("copy", "--quiet", *src, tls_registry.docker_ref(repo_name),
                         auth_registry.docker_ref(repo_name, "copied"))  # fmt: skip
    assert auth_registry.manifest_digest(repo_name, "copied") == img.manifest_digest
    # Without credentials the auth registry refuses.
    with pytest.raises(SkopeoError, match=r"(?i)unauthorized|authentication required"):
        skopeo("inspect", f"--cert-dir={auth_registry.cert_dir}",
               auth_registry.docker_ref(repo_name, "copied"))  # fmt: skip
    # Without the CA, TLS verification fails.
    with pytest.raises(SkopeoError, match=r"(?i)certificate"):
        skopeo("inspect", tls_registry.docker_ref(repo_name))


def test_log_is_kept(registry: Registry) -> None:
    offset = registry.log_offset()
    registry.request("GET", "/v2/no-such-repo/tags/list")
    assert "/v2/no-such-repo/tags/list" in registry.log(offset)


def test_start_stop_leaves_no_process(tmp_path: Path, registry_tools: None) -> None:
    import os

    reg = Registry(tmp_path / "r")
    with reg:
        pid = reg.pid
        assert pid is not None and reg.running
        assert reg.request("GET", "/v2/").status == 200
    assert not reg.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    with pytest.raises(OSError):
        urllib.request.urlopen(reg.base + "/v2/", timeout=2)
