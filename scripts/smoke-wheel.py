"""Smoke-test a built wheel in another interpreter (e.g. Debian's arm64 CPython under qemu).

    python scripts/smoke-wheel.py dist/spack_oci_rs-*-manylinux*_aarch64.whl \\
        --python "qemu-aarch64 -L .arm64-sysroot .arm64-sysroot/usr/bin/python3" \\
        --machine aarch64

This interpreter (the host's, with the test tools) starts a throwaway registry on 127.0.0.1
(tests/registry.py) and unpacks the wheel into a temporary directory; the given interpreter
then runs this file with ``--client URL`` and that directory on PYTHONPATH: it imports the
module (checking it comes from the wheel and ``platform.machine()``), pushes a small
directory, lists the tags, fetches the layer blob back and checks its sha256 digest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The emulated run is slow (qemu): generous, but bounded.
CLIENT_TIMEOUT = 300


def client(url: str, machine: str | None) -> int:
    """The part that runs in the wheel's interpreter."""
    import platform

    import spack_oci_rs as oci

    print(f"imported {oci.__file__} ({oci.__version__}) on {platform.machine()}")
    site = os.environ.get("PYTHONPATH", "")
    if not site or not Path(oci.__file__).is_relative_to(site):
        print(f"error: spack_oci_rs is not the unpacked wheel in {site!r}", file=sys.stderr)
        return 1
    if machine and platform.machine() != machine:
        print(f"error: running on {platform.machine()}, expected {machine}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "prefix")
        (src / "bin").mkdir(parents=True)
        (src / "bin" / "hello").write_text("#!/bin/sh\necho hello from the smoke test\n")
        (src / "data.bin").write_bytes(os.urandom(256 * 1024))
        (result,) = oci.push(url, [oci.PushItem("smoke-1.0", prefix=src)])
        if result.status != "pushed" or result.digest is None:
            print(f"error: push: {result.status} {result.error}", file=sys.stderr)
            return 1
        tags = oci.list_tags(url)
        blob = Path(tmp, "layer.tar.gz")
        size = oci.fetch_blob(url, result.digest, blob)
        got = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    print(f"pushed {url}:smoke-1.0 {result.manifest_digest}; tags {tags}")
    verdict = "matches" if got == result.digest else f"DIFFERS ({got})"
    print(f"fetched {result.digest} ({size} bytes), sha256 {verdict}")
    return 0 if tags == ["smoke-1.0"] and got == result.digest and size == result.size else 1


def host(wheel: Path, python: list[str], machine: str | None) -> int:
    """Start the registry, unpack the wheel, run the client part in `python`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from registry import Registry

    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp, "registry")) as reg:
        site = Path(tmp, "site")
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
        cmd = [*python, str(Path(__file__).resolve()), "--client", reg.repo_url("smoke/cache")]
        if machine:
            cmd += ["--machine", machine]
        env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
        print(f"smoke: {wheel.name} in {' '.join(python)}", flush=True)
        proc = subprocess.run(cmd, env=env, cwd=tmp, timeout=CLIENT_TIMEOUT, check=False)
    print(f"smoke: {'OK' if proc.returncode == 0 else 'FAILED'} ({wheel.name})")
    return proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", nargs="?", type=Path)
    parser.add_argument(
        "--python",
        default=shlex.quote(sys.executable),
        help="the interpreter command line (shell words; default: this one)",
    )
    parser.add_argument("--machine", help="platform.machine() the interpreter must report")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client(args.client, args.machine)
    if args.wheel is None or not args.wheel.is_file():
        parser.error(f"no such wheel: {args.wheel}")
    return host(args.wheel, shlex.split(args.python), args.machine)


if __name__ == "__main__":
    sys.exit(main())
