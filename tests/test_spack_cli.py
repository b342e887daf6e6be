"""``spack-oci-rs`` with the real Spack on PATH: mirror names resolved through Spack's own
config (URL and ``--oci-username-variable`` credentials), and ``copy --update-index`` with
Spack's archspec targets. A few seconds per Spack tree (three ``spack`` start-ups and a
push of one small spec)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_run import run_cli
from registry import Registry, unique_repo_name
from spack_env import LEAF, SpackEnv, require_spack

_SPACK_ROOT = require_spack(__file__)


def test_mirror_name_and_update_index_with_real_spack(
    auth_registry: Registry, registry: Registry, tmp_path: Path
) -> None:
    env = SpackEnv.create(
        tmp_path / "spack", spack_root=_SPACK_ROOT, ca_file=auth_registry.ca_file
    )
    repo = unique_repo_name("spackcli")
    extra = ["--oci-username-variable", "RS_USER", "--oci-password-variable", "RS_PASS"]
    env.mirror_add("rs", auth_registry.repo_url(repo), extra=extra)
    environ = env.environ()
    environ |= {"RS_USER": str(auth_registry.username), "RS_PASS": str(auth_registry.password)}
    environ["PATH"] = f"{_SPACK_ROOT / 'bin'}:{os.environ['PATH']}"
    env.extra_env.update(RS_USER=environ["RS_USER"], RS_PASS=environ["RS_PASS"])
    env.run("config", "add", "config:oci_backend:rust")
    env.install(LEAF)
    env.push("rs", LEAF)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=environ, timeout=300)

    ca = ["--ca-cert", str(auth_registry.ca_file)]
    tags = cli("tags", "rs", *ca)
    assert tags.returncode == 0, tags.stderr
    assert "Spack mirror rs" in tags.stderr
    (tag,) = [t for t in tags.stdout.split() if t.startswith(f"{LEAF}-")]
    dst = registry.repo_url(unique_repo_name("spackcli-copy"))
    copied = cli("copy", "rs", dst, "--update-index", "--json", *ca)
    assert copied.returncode == 0, copied.stderr
    data = json.loads(copied.stdout)
    assert [t["tag"] for t in data["tags"]] == [tag]
    assert data["index"]["specs"] == 1 and data["index"]["skipped"] == []
