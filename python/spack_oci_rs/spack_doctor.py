"""``spack-oci-rs doctor --spack``: what the zero-patch plugin does in a given Spack.

Runs ``spack python`` of the Spack on ``PATH`` (or ``--spack-root``) with a small script that
reports, from inside that Spack's interpreter, the Spack version, whether the plugin is
installed and loaded there, which dispatch points are active, and ``config:oci_backend``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["find_spack", "format_report", "report"]

_SCRIPT = """
import json, sys
import spack
out = {"spack_version": spack.spack_version, "python": sys.executable}
try:
    import spack_oci_rs_plugin as plugin
except ImportError as e:
    out.update(installed=False, error=str(e))
else:
    import spack.binary_distribution, spack.fetch_strategy, spack.installer
    try:
        import spack.new_installer
    except ImportError:
        pass
    out.update(installed=True, **plugin.status())
    out["toggle"] = plugin.toggle() if plugin.STATE["mode"] else None
print("SPACK-OCI-RS-DOCTOR " + json.dumps(out))
"""


class SpackNotFound(LookupError):
    """No Spack at ``--spack-root`` or on ``PATH``."""


def find_spack(spack_root: str | None) -> Path:
    """``SPACK_ROOT/bin/spack``, else the ``spack`` on ``PATH``."""
    if spack_root:
        exe = Path(spack_root) / "bin" / "spack"
        if not exe.is_file():
            raise SpackNotFound(f"{spack_root} is not a Spack checkout (no bin/spack)")
        return exe
    found = shutil.which("spack")
    if found is None:
        raise SpackNotFound("no spack on PATH: give --spack-root")
    return Path(found)


def report(spack: Path, timeout: float = 120.0) -> dict[str, Any]:
    """What the plugin does inside ``spack`` (see the module docstring)."""
    script = json.dumps(_SCRIPT)
    proc = subprocess.run(
        [str(spack), "python", "-c", f"exec({script})"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    for line in proc.stdout.splitlines():
        if line.startswith("SPACK-OCI-RS-DOCTOR "):
            data: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            data["spack"] = str(spack)
            return data
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    raise RuntimeError(f"{spack} python failed (exit {proc.returncode}): {tail[0]}")


def format_report(data: dict[str, Any]) -> str:
    """The report as the lines ``doctor --spack`` prints."""
    lines = [
        f"spack        {data['spack']} (Spack {data['spack_version']})",
        f"python       {data['python']}",
    ]
    if not data.get("installed"):
        lines.append(
            f"plugin       not installed in that Python ({data.get('error')}): "
            f"{data['python']} -m pip install spack-oci-rs"
        )
        return "\n".join(lines)
    state = {"plugin": "active", "patched": "tree patched with spack_patch/ (its own dispatch)"}
    inactive = f"inactive: {data.get('disabled')}"
    lines.append(f"plugin       {state.get(str(data.get('mode')), inactive)}")
    lines.append(f"oci_backend  {data.get('toggle')}")
    points = data.get("points") or []
    lines.append(f"dispatch     {len(points)} points" + "".join(f"\n  {p}" for p in points))
    return "\n".join(lines)
