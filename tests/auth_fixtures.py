"""Helpers shared by the authentication, proxy and TLS tests (test_auth.py, test_proxy.py,
test_tls.py): pushing a tiny image with the engine, fake Docker credential helpers, Docker
config files, and checks that secrets stay out of errors.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from registry import make_oci_layout, missing_tools, sha256_digest


def require_tools() -> None:
    """Skip without docker-registry/openssl; fail under CI (as conftest.py does)."""
    missing = missing_tools()
    if missing:
        reason = f"not on PATH: {', '.join(missing)} (install: see .ci/run)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI must run the registry tests, but {reason}", pytrace=False)
        pytest.skip(reason)


def push_image(ref: str, workdir: Path, client: oci.Client, *, files: int = 1) -> list[str]:
    """Push a tiny single-layer OCI image to ``ref`` (``oci://host/repo:tag``) with the
    engine; return its blob digests (config first)."""
    layers = [{f"etc/file{i}": os.urandom(64) for i in range(files)}]
    layout = make_oci_layout(workdir, tag="latest", layers=layers)
    blobs = workdir / "blobs" / "sha256"
    manifest = json.loads((blobs / layout.manifest_digest.split(":")[1]).read_bytes())
    digests = [layout.config_digest, *layout.layer_digests]
    for d in digests:
        oci.upload_blob(ref, blobs / d.split(":")[1], d, client=client)
    oci.upload_manifest(ref, manifest, client=client)
    return digests


def blob_files(directory: Path, n: int, size: int = 2048) -> list[tuple[Path, str]]:
    """``n`` files of random bytes in ``directory``, with their digests."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        data = os.urandom(size)
        path = directory / f"blob{i}"
        path.write_bytes(data)
        out.append((path, sha256_digest(data)))
    return out


def docker_config(path: Path, content: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def auth_field(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def fake_helper(bindir: Path, name: str, creds: Mapping[str, tuple[str, str]], log: Path) -> Path:
    """A ``docker-credential-<name>`` script answering ``get`` from ``creds`` (server ->
    (username, secret)) as Docker's helpers do, logging each server it is asked about."""
    bindir.mkdir(parents=True, exist_ok=True)
    cases = "\n".join(
        f"  {json.dumps(server)}) printf '%s' {json.dumps(json.dumps({'ServerURL': server, 'Username': u, 'Secret': s}))} ;;"  # noqa: E501
        for server, (u, s) in creds.items()
    )
    script = bindir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || { echo "unsupported: $1" >&2; exit 2; }\n'
        "read -r server\n"
        f'echo "$server" >> {json.dumps(str(log))}\n'
        'case "$server" in\n'
        f"{cases}\n"
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def assert_no_secret(exc: BaseException, secrets: Iterable[str]) -> None:
    """``str``, ``repr`` and ``args`` of ``exc`` hold none of ``secrets``."""
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"secret leaked in {text!r}"
