"""Signed build caches (cosign layout) against the real registry: sign on push, verify,
accumulation of several keys, every tamper case refused with its reason and nothing left in
the download cache, the CLI, and an independent check with HTTP and openssl alone."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from cli_run import run_cli
from faultproxy import FaultProxy
from index_corpus import flat_corpus
from registry import Registry, sha256_digest
from spec_images import fill, put_image, shared_layer

SIG_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"


def openssl_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """A P-256 key pair made by openssl (not by our code)."""
    key, pub = directory / f"{name}.key", directory / f"{name}.pub"
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key,
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    return key, pub


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {n: openssl_key_pair(tmp_path, n) for n in ("one", "two")}


def item(tag: str, tmp_path: Path) -> oci.PushItem:
    prefix = tmp_path / f"prefix-{tag}"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "bin" / "tool").write_text(f"tool {tag}\n")
    extra = {"spec": {"_meta": {"version": 5}, "nodes": [{"name": tag}]}}
    return oci.PushItem(tag, prefix=str(prefix), extra_config=extra)


def push(ref: str, tags: list[str], tmp_path: Path, key: Path | None) -> dict[str, str]:
    results = oci.push(ref, [item(t, tmp_path) for t in tags], sign_key=key)
    assert all(r.status == "pushed" for r in results), [r.error for r in results]
    return {r.tag: r.manifest_digest for r in results if r.manifest_digest}


def signature_manifest(registry: Registry, repo: str, digest: str) -> dict[str, Any]:
    tag = digest.replace(":", "-") + ".sig"
    return dict(registry.get_manifest(repo, tag).json())


def openssl_verifies(
    registry: Registry, repo: str, layer: dict[str, Any], pub: Path, tmp_path: Path
) -> bool:
    """Fetch the payload over plain HTTP and check the annotation with openssl alone."""
    payload = registry.request("GET", f"/v2/{repo}/blobs/{layer['digest']}").body
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(layer["annotations"][SIG_ANNOTATION]))
    proc = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            pub,
            "-signature",
            tmp_path / "sig.der",
            tmp_path / "payload",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and "Verified OK" in proc.stdout


def test_signed_push_is_cosign_layout_and_openssl_verifies(
    registry: Registry, repo_name: str, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    ref = registry.repo_url(repo_name)
    digests = push(ref, ["a-1.0-aaa.spack"], tmp_path, keys["one"][0])
    digest = digests["a-1.0-aaa.spack"]
    sig = signature_manifest(registry, repo_name, digest)
    assert sig["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    (layer,) = sig["layers"]
    assert layer["mediaType"] == SIG_LAYER
    payload = json.loads(registry.request("GET", f"/v2/{repo_name}/blobs/{layer['digest']}").body)
    assert payload["critical"] == {
        "identity": {"docker-reference": f"{registry.host}/{repo_name}"},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature",
    }
    assert payload["optional"]["tag"] == "a-1.0-aaa.spack"
    assert openssl_verifies(registry, repo_name, layer, keys["one"][1], tmp_path)
    assert not openssl_verifies(registry, repo_name, layer, keys["two"][1], tmp_path)
    v = oci.verify(f"{ref}:a-1.0-aaa.spack", [keys["two"][1], keys["one"][1]])
    assert (v.digest, v.key) == (digest, str(keys["one"][1]))


def test_signed_push_requests(
    make_proxy: Callable[..., FaultProxy],
    repo_name: str,
    keys: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    """What signing adds to a push: per image the payload (POST, PUT) and the signature
    manifest (PUT); the shared signature config once, without a HEAD while the tag listing
    shows no signature yet (that HEAD was a round trip in series before the first
    signatures), with one once it does. No signature manifest is read that the listing
    says is absent."""
    proxy = make_proxy()
    ref = proxy.repo_url(repo_name)
    key = keys["one"][0]

    def sent(tags: list[str]) -> list[str]:
        before = len(proxy.log)
        push(ref, tags, tmp_path, key)
        return [f"{r.method} {r.path.split('?')[0]}" for r in list(proxy.log)[before:]]

    first = sent(["a-1.0-aaa.spack", "b-1.0-bbb.spack"])
    assert not [r for r in first if r.startswith("HEAD") or (".sig" in r and "GET" in r)], first
    # tags/list; per image layer and config (POST+PUT each), manifest; payload POST+PUT and
    # signature manifest; the signature config POST+PUT once.
    assert len(first) == 1 + 2 * (5 + 3) + 2, first
    again = sent(["c-1.0-ccc.spack"])
    assert sum(r.startswith("HEAD /v2/") and "/blobs/" in r for r in again) == 1, again
    assert len(again) == 1 + 5 + 3 + 1, again


def test_signatures_of_several_keys_accumulate(
    registry: Registry, repo_name: str, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    ref = registry.repo_url(repo_name)
    digest = push(ref, ["b-1.0-bbb.spack"], tmp_path, keys["one"][0])["b-1.0-bbb.spack"]
    assert oci.sign(f"{ref}:b-1.0-bbb.spack", keys["two"][0]) == digest
    oci.sign(f"{ref}:b-1.0-bbb.spack", keys["two"][0])  # the same signature is not added twice
    layers = signature_manifest(registry, repo_name, digest)["layers"]
    assert len(layers) == 2
    for layer, (_, pub) in zip(layers, [keys["one"], keys["two"]], strict=True):
        assert openssl_verifies(registry, repo_name, layer, pub, tmp_path)
    for _, pub in keys.values():
        assert oci.verify(f"{ref}:b-1.0-bbb.spack", [pub]).key == str(pub)


def put_signature(
    registry: Registry, repo: str, digest: str, layer_edit: Callable[[dict[str, Any]], None]
) -> None:
    """Replace the signature image of ``digest`` by an edited copy (a tampering registry)."""
    tag = digest.replace(":", "-") + ".sig"
    manifest = dict(registry.get_manifest(repo, tag).json())
    layer_edit(manifest["layers"][0])
    oci.upload_manifest(f"{registry.repo_url(repo)}:{tag}", manifest)


def repoint(registry: Registry, repo: str, tag: str, to_tag: str) -> None:
    body = registry.get_manifest(repo, to_tag).body
    oci.upload_manifest(
        f"{registry.repo_url(repo)}:{tag}",
        body,
        media_type="application/vnd.oci.image.manifest.v1+json",
    )


def upload_payload(registry: Registry, repo: str, data: bytes) -> tuple[str, int]:
    digest, _ = oci.upload_blob(registry.repo_url(repo), data)
    return digest, len(data)


def refused(ref: str, pub: Path, cache: Path) -> str:
    """Prefetch ``ref`` with trusted keys: refused, nothing left in the cache."""
    (result,) = oci.prefetch_images([ref], cache, trusted_keys=[pub])
    assert not result.ok
    assert isinstance(result.error, oci.SignatureError), result.error
    left = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert left == [], left
    with pytest.raises(oci.SignatureError) as e:
        oci.verify(ref, [pub])
    assert str(e.value) == str(result.error)
    return str(e.value)


def test_tamper_cases_are_refused_with_their_reason(
    registry: Registry, repo_name: str, keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    ref = registry.repo_url(repo_name)
    key, pub = keys["one"]
    signed = push(
        ref,
        [
            "old-1.0-x.spack",
            "new-1.0-x.spack",
            "t1-1.0-x.spack",
            "t2-1.0-x.spack",
            "t3-1.0-x.spack",
            "t4-1.0-x.spack",
        ],
        tmp_path,
        key,
    )
    unsigned = push(ref, ["evil-1.0-x.spack", "other-1.0-x.spack"], tmp_path, None)
    cache = tmp_path / "cache"
    # The genuine image passes, and its blobs land in the cache.
    (ok,) = oci.prefetch_images([f"{ref}:new-1.0-x.spack"], cache, trusted_keys=[pub])
    assert ok.ok and ok.downloaded == 2, ok.error
    cache = tmp_path / "cache2"

    repoint(registry, repo_name, "t1-1.0-x.spack", "evil-1.0-x.spack")
    msg = refused(f"{ref}:t1-1.0-x.spack", pub, cache)
    assert "t1-1.0-x.spack" in msg and "no signature" in msg, msg

    repoint(registry, repo_name, "new-1.0-x.spack", "old-1.0-x.spack")  # rollback
    msg = refused(f"{ref}:new-1.0-x.spack", pub, cache)
    assert "signed for another tag (old-1.0-x.spack)" in msg, msg

    # A signature copied from another image: for another digest.
    src = signature_manifest(registry, repo_name, signed["t2-1.0-x.spack"])
    target = unsigned["other-1.0-x.spack"]
    oci.upload_manifest(f"{ref}:{target.replace(':', '-')}.sig", src)
    msg = refused(f"{ref}:other-1.0-x.spack", pub, cache)
    assert f"signed for another digest ({signed['t2-1.0-x.spack']})" in msg, msg

    msg = refused(f"{ref}:t2-1.0-x.spack", keys["two"][1], cache)
    assert "bad signature" in msg, msg

    def truncate(layer: dict[str, Any]) -> None:
        der = base64.b64decode(layer["annotations"][SIG_ANNOTATION])
        layer["annotations"][SIG_ANNOTATION] = base64.b64encode(der[:-5]).decode()

    put_signature(registry, repo_name, signed["t2-1.0-x.spack"], truncate)
    msg = refused(f"{ref}:t2-1.0-x.spack", pub, cache)
    assert "not a DER ECDSA signature" in msg, msg

    def not_base64(layer: dict[str, Any]) -> None:
        layer["annotations"][SIG_ANNOTATION] = "*** not base64 ***"

    put_signature(registry, repo_name, signed["t3-1.0-x.spack"], not_base64)
    msg = refused(f"{ref}:t3-1.0-x.spack", pub, cache)
    assert "signature is not base64" in msg, msg

    huge = upload_payload(registry, repo_name, b"{" + b" " * 200_000 + b"}")
    not_json = upload_payload(registry, repo_name, b"\x00 not json at all")
    for (digest, size), reason in ((huge, "exceeds 65536"), (not_json, "payload is not JSON")):
        put_signature(
            registry,
            repo_name,
            signed["t4-1.0-x.spack"],
            lambda layer, d=digest, s=size: layer.update(digest=d, size=s),
        )
        msg = refused(f"{ref}:t4-1.0-x.spack", pub, cache)
        assert reason in msg, msg


def test_index_signed_and_verified_on_fetch(
    registry: Registry, repo_name: str, keys: dict[str, tuple[Path, Path]]
) -> None:
    ref = registry.repo_url(repo_name)
    oci.upload_index(ref, b'{"database": {}}')
    with pytest.raises(oci.SignatureError, match=r"index\.spack: refused: no signature"):
        oci.fetch_index(ref, trusted_keys=[keys["one"][1]])
    oci.sign(f"{ref}:index.spack", keys["one"][0])
    found = oci.fetch_index(ref, trusted_keys=[keys["one"][1]])
    assert found is not None and found[1] == b'{"database": {}}'
    assert found[0] == sha256_digest(b'{"database": {}}')


def test_update_index_signs_the_index_it_uploads(
    registry: Registry, repo_name: str, keys: dict[str, tuple[Path, Path]]
) -> None:
    """A rebuild and a merge with ``sign_key`` sign the index manifest they PUT (the
    signature tag of that very digest), so a fetch with trusted keys accepts it."""
    ref = registry.repo_url(repo_name)
    (key, pub), (_, other) = keys["one"], keys["two"]
    configs = flat_corpus(4, seed=3)
    fill(ref, configs[:3])
    rebuilt = oci.update_index(ref, targets="{}", sign_key=key)
    assert oci.verify(f"{ref}@{rebuilt.manifest_digest}", [pub]).digest == rebuilt.manifest_digest
    put_image(ref, *configs[3], layer=shared_layer(ref))
    merged = oci.update_index(ref, targets="{}", merge=[configs[3][0]], sign_key=key)
    assert (merged.mode, merged.settled, merged.specs) == ("merge", True, 4)
    assert oci.verify(f"{ref}:index.spack", [pub]).digest == merged.manifest_digest
    assert oci.fetch_index(ref, trusted_keys=[pub]) is not None
    with pytest.raises(oci.SignatureError, match="refused"):
        oci.fetch_index(ref, trusted_keys=[other])


def test_bad_keys_fail_before_any_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRETBYTES\n-----END PRIVATE KEY-----\n")
    # An unreachable registry: the key is refused first.
    with pytest.raises(oci.InvalidArgumentError) as e:
        oci.sign("oci+http://127.0.0.1:9/x:t", bad)
    assert "bad.pem" in str(e.value) and "TOPSECRET" not in str(e.value)
    with pytest.raises(oci.InvalidArgumentError, match="not an ECDSA P-256 public key"):
        oci.prefetch_images(["oci+http://127.0.0.1:9/x:t"], tmp_path, trusted_keys=[bad])
    key, _ = openssl_key_pair(tmp_path, "open")
    key.chmod(0o644)
    oci.reset_logging()
    with caplog.at_level(logging.WARNING, logger="spack_oci_rs"), pytest.raises(oci.OciError):
        oci.sign("oci+http://127.0.0.1:9/x:t", key)
    assert "readable by group or others" in caplog.text
    assert "PRIVATE" not in caplog.text


def test_cli_keygen_sign_verify(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    ref = registry.repo_url(repo_name)
    push(ref, ["c-1.0-ccc.spack"], tmp_path, None)
    out = run_cli("keygen", "--out", str(tmp_path / "k"), "--json")
    assert out.returncode == 0, out.stderr
    paths = json.loads(out.stdout)
    assert Path(paths["private_key"]).stat().st_mode & 0o077 == 0
    assert "PRIVATE" not in out.stdout
    assert run_cli("keygen", "--out", str(tmp_path / "k")).returncode == 1  # exists already
    image = f"{ref}:c-1.0-ccc.spack"
    out = run_cli("verify", image, "--key", paths["public_key"])
    assert out.returncode == 1 and "no signature" in out.stderr, out.stderr
    out = run_cli("sign", image, "--key", paths["private_key"], "--json")
    assert out.returncode == 0, out.stderr
    digest = json.loads(out.stdout)["digest"]
    out = run_cli("verify", image, "--key", paths["public_key"], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["digest"] == digest
    assert run_cli("verify", image).returncode == 2  # --key is required
