"""The README's walkthrough for Spack users, run exactly as written: its ``registry.yml`` and
its shell lines are read from README.md (not copied here) and run in one shell, against the
Spack tree of ``$SPACK_ROOT`` with the wheel installed in Spack's interpreter. Offline, so
``zlib-ng`` is a small local stand-in package (no download, no compiler); pip finds the wheel
already installed (no index)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_walkthrough import shell_lines, walkthrough
from spack_env import SpackEnv, require_spack, write_package
from spack_oci_rs import patch

_SPACK_ROOT = require_spack(__file__)
_VERSION = patch.spack_version(_SPACK_ROOT)

_STAND_IN = '''\
class ZlibNg(Package):
    """A stand-in for zlib-ng: the walkthrough runs offline."""

    homepage = "https://github.com/zlib-ng/zlib-ng"
    has_code = False

    version("2.2.4")

    def install(self, spec, prefix):
        mkdirp(join_path(prefix, "lib"))
        with open(join_path(prefix, "lib", "libz-ng.txt"), "w") as f:
            f.write("installed at %s\\n" % prefix)
'''


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.skipif(_VERSION.startswith("1.0."), reason="Spack 1.0 has no oci+http:// mirrors")
def test_walkthrough(tmp_path: Path) -> None:
    config = walkthrough("registry.yml")
    data_dir = Path(re.search(r"rootdirectory: (\S+)", config).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"addr: 127.0.0.1:(\d+)", config).group(1))  # type: ignore[union-attr]
    assert _port_free(port), f"port {port} of the walkthrough's registry is in use"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = SpackEnv.create(tmp_path / "spack", spack_root=_SPACK_ROOT)
    write_package(env.repo_dir, "zlib-ng", _STAND_IN)
    (tmp_path / "registry.yml").write_text(config)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python3 = bin_dir / "python3"  # a script, not a link: a venv is found from its own path
    python3.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python3.chmod(0o755)
    (bin_dir / "spack").symlink_to(_SPACK_ROOT / "bin" / "spack")
    environ = env.environ()
    environ.update(PATH=f"{bin_dir}{os.pathsep}{environ['PATH']}", PIP_NO_INDEX="1")
    script = "set -euo pipefail\n" + "\n".join(shell_lines()) + "\n"
    log = tmp_path / "walkthrough.log"  # a file: the registry left running keeps it open
    with open(log, "w") as out_file:
        proc = subprocess.Popen(
            ["bash", "-c", script], cwd=tmp_path, env=environ, start_new_session=True,
            stdout=out_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        proc.wait(timeout=600)
        out = log.read_text()
        assert proc.returncode == 0, out
        tags = _tags(port)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the registry the walkthrough started
            os.killpg(proc.pid, signal.SIGTERM)
        shutil.rmtree(data_dir, ignore_errors=True)
    assert "zlib-ng@2.2.4" in out and "from binary cache" in out, out
    assert "index.spack" in tags and any(t.startswith("zlib-ng-2.2.4-") for t in tags), tags


def _tags(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/v2/spack-cache/tags/list"
    with urllib.request.urlopen(url, timeout=10) as r:
        tags: list[str] = json.load(r)["tags"]
    return tags
