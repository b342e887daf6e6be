"""The zero-patch plugin's own logic against a minimal stand-in for Spack's modules (the real
trees are exercised by tests/test_spack_plugin.py and test_spack_e2e.py): version gate, tree
already patched, changed internals, the warning only when the toggle asks for rust, the
native module never imported with the toggle at python, no exception ever escaping."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_FAKE = {
    "spack/__init__.py": """
        spack_version = "{version}"
        spack_version_info = tuple(int(x) if x.isdigit() else x for x in spack_version.split("."))
    """,
    "spack/oci/__init__.py": "{oci_init}",
    "spack/oci/image.py": "def is_oci_url(url): return url.startswith(('oci://', 'oci+http://'))",
    "spack/oci/opener.py": "def urlopen(req, *a, **k): raise OSError('python opener')",
    "spack/schema/__init__.py": "",
    "spack/schema/config.py": "properties = {{'config': {{'properties': {{}}}}}}",
    "spack/config.py": """
        VALUES = {{}}
        def get(key, default=None): return VALUES.get(key, default)
    """,
    "spack/error.py": "class SpackError(Exception): pass",
    "spack/llnl/__init__.py": "",
    "spack/llnl/util/__init__.py": "",
    "spack/llnl/util/tty.py": "def warn(msg): print('WARNING: ' + msg)",
    "spack/binary_distribution.py": """
        def make_uploader(mirror, force=False, update_index=False, signing_key=None,
                          base_image=None): return "python-uploader"
        def _oci_update_index(image_ref, tmpdir, pool): return "python-index"
        def get_index_fetcher(scheme, url_and_version, cache_entry): return "python-fetcher"
        def {download}: return "python-download"
        class BinaryCacheIndex:
            def _fetch_and_cache_index(self, url_and_version, cache_entry={{}}): return False
    """,
}

_SCRIPT = """
import json, sys
import spack_oci_rs_plugin as plugin
plugin.spack_config()                      # what Spack does while it builds its config
import spack.config, spack.binary_distribution as bd
spack.config.VALUES["config:oci_backend"] = sys.argv[1]
out = {"status": plugin.status(), "native": "spack_oci_rs._native" in sys.modules}
try:
    out["uploader"] = str(bd.make_uploader(type("M", (), {"push_url": "oci://h/r"})()))
except Exception as e:
    out["uploader"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def _run(tmp_path: Path, toggle: str, **fake: str) -> tuple[dict[str, object], str]:
    values = {"version": "1.1.0", "oci_init": "", "download": "download_tarball(spec, "
              "unsigned=False, mirrors_for_spec=None)", **fake}  # fmt: skip
    for rel, text in _FAKE.items():
        path = tmp_path / "fake" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text.format(**values)))
    # The fake Spack first on sys.path, then the installed packages (plugin and engine).
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'fake')!r})\n"
         + _SCRIPT, toggle],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def test_supported_version_dispatches_only_with_rust(tmp_path: Path) -> None:
    out, printed = _run(tmp_path, "python")
    status = out["status"]
    assert isinstance(status, dict) and status["mode"] == "plugin"
    assert "spack.binary_distribution.make_uploader" in status["points"]
    assert out["uploader"] == "python-uploader" and not out["native"] and not printed
    # With rust the engine's adapter is asked for; it needs the real Spack (spack.hash_types,
    # ...), so here it cannot be imported: Spack's one-line error, not Spack's uploader.
    out, _ = _run(tmp_path, "rust")
    assert str(out["uploader"]).startswith("SpackError: config:oci_backend is 'rust' but")
    assert "pip install spack-oci-rs" in str(out["uploader"])


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        ({"version": "0.23.1"}, "Spack 0.23.1 is not a version spack-oci-rs supports"),
        ({"download": "download_tarball(spec)"}, "download_tarball('spec',) has changed"),
    ],
)
def test_unknown_or_changed_spack_dispatches_nothing(
    tmp_path: Path, fake: dict[str, str], reason: str
) -> None:
    for toggle, warned in (("python", False), ("rust", True)):
        out, printed = _run(tmp_path, toggle, **fake)
        status = out["status"]
        assert isinstance(status, dict) and status["mode"] == "disabled", status
        assert reason in str(status["disabled"])
        assert out["uploader"] == "python-uploader" and not out["native"]
        assert (reason in printed and printed.count("WARNING") == 1) is warned, printed


def test_patched_tree_is_left_to_its_patch(tmp_path: Path) -> None:
    out, printed = _run(tmp_path, "rust", oci_init="def rust_backend(): return None")
    status = out["status"]
    assert isinstance(status, dict) and status["mode"] == "patched" and status["points"] == []
    assert out["uploader"] == "python-uploader" and not printed
