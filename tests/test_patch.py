"""The Spack patch tool: apply, check, revert, refusals. Runs without Spack on a synthetic tree
made from the patches' own context, and on a copy of a real Spack when SPACK_ROOT is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spack_oci_rs import patch


def synthetic_tree(root: Path, version: str) -> Path:
    """A directory holding, for each patched file, the unpatched text of every hunk."""
    name = patch.PATCHES[version]
    text = (patch._patch_dir() / name).read_text()
    init = root / "lib" / "spack" / "spack" / "__init__.py"
    init.parent.mkdir(parents=True)
    init.write_text(f'__version__ = "{version}"\n')
    for fp in patch.parse(text):
        path = root / fp.path
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join("".join(h.old) + "# ...\n" for h in fp.hunks)
        path.write_text(path.read_text() + body if path.exists() else body)
    return root


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spack_oci_rs.patch", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("version", sorted(patch.PATCHES))
def test_apply_check_revert(tmp_path: Path, version: str) -> None:
    root = synthetic_tree(tmp_path / "spack", version)
    before = {p: p.read_bytes() for p in root.rglob("*.py")}
    assert patch.check(root) == "unpatched"
    patch.apply(root)
    assert patch.check(root) == "patched"
    text = (root / "lib/spack/spack/binary_distribution.py").read_text()
    assert "rust.RustOCIUploader" in text and 'scheme in ("oci", "oci+http")' in text
    with pytest.raises(patch.PatchError, match="already patched"):
        patch.apply(root)
    patch.revert(root)
    assert {p: p.read_bytes() for p in root.rglob("*.py")} == before
    with pytest.raises(patch.PatchError, match="not patched"):
        patch.revert(root)


def test_refusals(tmp_path: Path) -> None:
    root = synthetic_tree(tmp_path / "spack", "1.1.0")
    (root / "lib/spack/spack/__init__.py").write_text('__version__ = "0.23.1"\n')
    r = run("apply", "--spack-root", str(root))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "0.23.1" in r.stderr and "not supported" in r.stderr
    r = run("check", "--spack-root", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "not a Spack checkout" in r.stderr

    # Edited where the patch goes: refused, and no file changes.
    root2 = synthetic_tree(tmp_path / "spack2", "1.1.0")
    fetch = root2 / "lib/spack/spack/fetch_strategy.py"
    fetch.write_text(fetch.read_text().replace("self.stage.save_filename", "self.stage.path"))
    before = {p: p.read_bytes() for p in root2.rglob("*.py")}
    r = run("apply", "--spack-root", str(root2))
    assert r.returncode == 1 and "fetch_strategy.py" in r.stderr
    assert {p: p.read_bytes() for p in root2.rglob("*.py")} == before

    # Partially patched.
    root3 = synthetic_tree(tmp_path / "spack3", "1.1.0")
    patch.apply(root3)
    fp = next(f for f in patch.patch_for(root3) if f.path.endswith("installer.py"))
    path = root3 / fp.path
    path.write_text("".join(patch._transform(path.read_text().splitlines(True), fp, True)))
    with pytest.raises(patch.PatchError, match="partially patched"):
        patch.check(root3)


def test_cli(tmp_path: Path) -> None:
    root = synthetic_tree(tmp_path / "spack", "1.1.0")
    assert run("check", "--spack-root", str(root)).stdout.strip().endswith("unpatched")
    r = run("apply", "--spack-root", str(root))
    assert r.returncode == 0 and "oci_backend:rust" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "spack_oci_rs.patch", "revert"],
        capture_output=True,
        text=True,
        env={**os.environ, "SPACK_ROOT": str(root)},
        check=False,
    )
    assert r.returncode == 0, r.stderr


SPACK_ROOT = os.environ.get("SPACK_ROOT")


@pytest.mark.skipif(not SPACK_ROOT, reason="SPACK_ROOT is not set: no real Spack to patch")
def test_real_spack_copy(tmp_path: Path) -> None:
    assert SPACK_ROOT is not None
    src = Path(SPACK_ROOT)
    root = tmp_path / "spack"
    version = patch.spack_version(src)
    if version not in patch.PATCHES:
        pytest.skip(f"SPACK_ROOT is Spack {version}, which has no patch")
    for fp in [*patch.patch_for(src)]:
        dest = root / fp.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / fp.path, dest)
    shutil.copy(src / "lib/spack/spack/__init__.py", root / "lib/spack/spack/__init__.py")
    state = patch.check(root)
    if state == "patched":
        patch.revert(root)
    patch.apply(root)
    assert patch.check(root) == "patched"
    for fp in patch.patch_for(src):
        compile((root / fp.path).read_text(), fp.path, "exec")
