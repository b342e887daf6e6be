"""The zero-patch plugin in a real, unmodified Spack tree (``$SPACK_ROOT``): which dispatch
points it installs per version, what it costs Spack's start-up, and that a tree patched with
``spack_patch/`` keeps its own dispatch (no double one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spack_env import SpackEnv, require_spack
from spack_oci_rs import patch

_SPACK_ROOT = require_spack(__file__)
_VERSION = patch.spack_version(_SPACK_ROOT)

_STATUS = """
import json, sys
import spack_oci_rs_plugin as plugin
import spack.binary_distribution, spack.fetch_strategy, spack.installer
try:
    import spack.new_installer
except ImportError:
    pass
print(json.dumps({**plugin.status(), "toggle": plugin.toggle()}))
"""

_POINTS = [
    "spack.binary_distribution.make_uploader",
    "spack.binary_distribution._oci_update_index",
    "spack.binary_distribution.get_index_fetcher",
    "spack.binary_distribution.BinaryCacheIndex._fetch_and_cache_index",
    "spack.binary_distribution.download_tarball",
    "spack.fetch_strategy.OCIRegistryFetchStrategy.fetch",
    "spack.installer.PackageInstaller._install",
]


def _status(env: SpackEnv, tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "status.py"
    script.write_text(_STATUS)
    out: dict[str, object] = json.loads(env.run("python", script).stdout.strip().splitlines()[-1])
    return out


def test_dispatch_points_and_start_up_cost(tmp_path: Path) -> None:
    env = SpackEnv.create(tmp_path / "spack", spack_root=_SPACK_ROOT)
    env.run("config", "add", "config:oci_backend:rust")
    status = _status(env, tmp_path)
    assert status["mode"] == "plugin" and status["disabled"] is None, status
    assert status["toggle"] == "rust" and status["spack_version"] == _VERSION
    new_installer = [] if _VERSION.startswith("1.0.") else [
        "spack.new_installer.PackageInstaller._installer"
    ]  # fmt: skip
    assert status["points"] == _POINTS + new_installer
    seconds = float(status["seconds"])  # type: ignore[arg-type]
    print(f"\nSpack {_VERSION}: plugin entry point + patching: {seconds * 1000:.1f} ms")
    assert seconds < 0.05


@pytest.mark.skipif(_VERSION not in patch.PATCHES, reason=f"no spack_patch/ for {_VERSION}")
def test_patched_tree_keeps_its_own_dispatch(tmp_path: Path) -> None:
    tree = tmp_path / "spack"
    shutil.copytree(_SPACK_ROOT, tree, symlinks=True)
    patch.apply(tree)
    env = SpackEnv.create(tmp_path / "env", spack_root=tree)
    env.run("config", "add", "config:oci_backend:rust")
    status = _status(env, tmp_path)
    assert status["mode"] == "patched" and status["points"] == [], status


def test_doctor_spack(tmp_path: Path) -> None:
    """``spack-oci-rs doctor --spack`` reports the plugin as the Spack's interpreter sees it."""
    env = SpackEnv.create(tmp_path / "spack", spack_root=_SPACK_ROOT)
    env.run("config", "add", "config:oci_backend:rust")
    cli = [sys.executable, "-m", "spack_oci_rs", "doctor", "--spack", "--spack-root"]
    proc = subprocess.run(
        [*cli, str(_SPACK_ROOT), "--json"], env=env.environ(), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["installed"] and data["mode"] == "plugin" and data["toggle"] == "rust"
    assert data["spack_version"] == _VERSION and data["points"][0].endswith("make_uploader")
    text = subprocess.run(
        [*cli, str(_SPACK_ROOT)], env=env.environ(), capture_output=True, text=True,
        timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "plugin       active" in text and "oci_backend  rust" in text, text


_BUG = """
import spack.error
import spack_oci_rs
import spack_oci_rs.spack as adapter

def bug(*args, **kwargs):
    raise TypeError("simulated bug")

spack_oci_rs.fetch_index = bug
fetcher = adapter.RustOCIIndexFetcher(type("M", (), {"url": "oci://127.0.0.1:9/x"})(), None)
try:
    fetcher.conditional_fetch()
except spack.error.SpackError as e:
    print("SPACK-ERROR", e.message, "|", e.long_message)
"""


def test_internal_error_is_one_spack_error(tmp_path: Path) -> None:
    """A bug of ours inside an engine call surfaces as a Spack error naming spack-oci-rs (and
    how to get around it), not as a bare TypeError."""
    env = SpackEnv.create(tmp_path / "spack", spack_root=_SPACK_ROOT)
    script = tmp_path / "bug.py"
    script.write_text(_BUG)
    out = env.run("python", script).stdout
    assert (
        "SPACK-ERROR spack-oci-rs: internal error in RustOCIIndexFetcher.conditional_fetch:" in out
    )
    assert "TypeError: simulated bug" in out and "oci_backend:python" in out, out
