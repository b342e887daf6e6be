"""Signed OCI build caches through Spack with the plugin (``config:oci_sign_key``,
``config:oci_trusted_keys``): a signed push makes cosign-layout signatures of every spec
image and of the index that openssl verifies on its own; an install with trusted keys
accepts the genuine image, refuses a re-pointed tag (one line naming spec, mirror and reason,
nothing installed) and ``--no-check-signature`` skips the check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spack_oci_rs as oci
from registry import Registry
from spack_env import MID, ROOT, require_spack
from test_signing import openssl_key_pair, openssl_verifies
from test_spack_e2e import cache_registry, make_env, spack_tree

_SPACK_ROOT = require_spack(__file__)
__all__ = ["cache_registry", "spack_tree"]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _tag(reg: Registry, repo: str, name: str) -> str:
    (tag,) = [t for t in reg.list_tags(repo) if t.startswith(f"{name}-")]
    return tag


def _put(reg: Registry, repo: str, tag: str, body: bytes) -> None:
    resp = reg.request(
        "PUT", f"/v2/{repo}/manifests/{tag}", headers={"Content-Type": MANIFEST}, data=body
    )
    assert resp.status == 201, resp.body


def test_signed_push_and_verified_install(
    spack_tree: Path, cache_registry: Registry, tmp_path: Path, repo_name: str
) -> None:
    reg = cache_registry
    key, pub = openssl_key_pair(tmp_path, "ci")
    env = make_env(tmp_path / "spack", spack_tree, reg)
    env.install(ROOT)
    env.run("config", "add", f"config:oci_sign_key:{key}")
    env.mirror_add("oci", reg.repo_url(repo_name), unsigned=False)
    push = env.push("oci", ROOT, update_index=True)
    assert push.stdout.count("Pushed ") == 3, push.stdout + push.stderr

    # Every spec image and the index: cosign layout, checked by openssl alone.
    tags = [t for t in reg.list_tags(repo_name) if not t.endswith(".sig")]
    assert len(tags) == 4 and "index.spack" in tags
    for tag in tags:
        digest = reg.get_manifest(repo_name, tag).headers["Docker-Content-Digest"]
        sig_tag = digest.replace(":", "-") + ".sig"
        (layer,) = reg.get_manifest(repo_name, sig_tag).json()["layers"]
        assert openssl_verifies(reg, repo_name, layer, pub, tmp_path), tag

    env.run("config", "rm", "config:oci_sign_key")
    env.run("config", "add", f"config:oci_trusted_keys:[{pub}]")
    root_tag, mid_tag = _tag(reg, repo_name, ROOT), _tag(reg, repo_name, MID)
    genuine = reg.get_manifest(repo_name, root_tag).body

    env.uninstall_all()
    env.clear_download_caches()
    env.install(ROOT, cache_only=True, check_signature=True)
    assert ROOT in env.installed_names()

    # The root's tag re-pointed to another signed image of the same cache: refused.
    env.uninstall_all()
    env.clear_download_caches()
    _put(reg, repo_name, root_tag, reg.get_manifest(repo_name, mid_tag).body)
    refused = env.run("install", "--cache-only", ROOT, check=False)
    lines = [
        line for line in (refused.stdout + refused.stderr).splitlines() if "Not installing" in line
    ]
    assert len(lines) == 1, refused.stdout + refused.stderr
    assert root_tag in lines[0] and repo_name in lines[0], lines
    assert f"signed for another tag ({mid_tag})" in lines[0], lines
    assert refused.returncode != 0
    assert ROOT not in env.installed_names()

    # --no-check-signature skips the check (the genuine image, with its signature broken).
    _put(reg, repo_name, root_tag, genuine)
    root_ref = f"{reg.repo_url(repo_name)}:{root_tag}"
    client = oci.Client(ca_certs=[str(reg.ca_file)] if reg.ca_file else None)
    digest = oci.verify(root_ref, [pub], client=client).digest
    sig_tag = digest.replace(":", "-") + ".sig"
    # A manifest that is not a signature, under the signature tag.
    _put(reg, repo_name, sig_tag, reg.get_manifest(repo_name, mid_tag).body)
    with pytest.raises(oci.SignatureError, match="is not a signature"):
        oci.verify(root_ref, [pub], client=client)
    env.uninstall_all()
    env.clear_download_caches()
    env.install(ROOT, cache_only=True)
    assert ROOT in env.installed_names()
