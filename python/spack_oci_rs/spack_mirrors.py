"""Spack mirrors by name, as the ``spack`` on ``PATH`` sees them (every config scope).

``spack-oci-rs tags --mirror rs`` and ``spack-oci-rs doctor rs`` (a bare word that names a
configured mirror) use the mirror's URL and credentials: ``access_pair`` (``id`` or
``id_variable`` with ``secret_variable``, or Spack's older ``[id, secret]`` list) and
``access_token_variable``, read from the environment as Spack reads them. Spack runs once,
as ``spack python``, to print its merged ``mirrors`` config as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

__all__ = ["Mirror", "MirrorError", "find_spack", "mirrors"]

_DUMP = "import json, spack.config; print(json.dumps(spack.config.get('mirrors') or {}))"


class MirrorError(Exception):
    """A mirror that cannot be used (no Spack, no such mirror, not an OCI mirror)."""


@dataclass(frozen=True)
class Mirror:
    name: str
    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def is_oci(self) -> bool:
        return self.url.startswith(("oci://", "oci+http://"))


def find_spack() -> str | None:
    """The ``spack`` on ``PATH`` (or ``$SPACK_ROOT/bin/spack``)."""
    found = shutil.which("spack")
    if found is None and os.environ.get("SPACK_ROOT"):
        candidate = os.path.join(os.environ["SPACK_ROOT"], "bin", "spack")
        found = candidate if os.access(candidate, os.X_OK) else None
    return found


def _credentials(entry: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    pair = entry.get("access_pair")
    user = secret = None
    if isinstance(pair, list) and len(pair) == 2:
        user, secret = str(pair[0]), str(pair[1])
    elif isinstance(pair, dict):
        user = pair.get("id") or os.environ.get(str(pair.get("id_variable") or ""))
        secret = os.environ.get(str(pair.get("secret_variable") or ""))
    token_var = entry.get("access_token_variable")
    token = os.environ.get(str(token_var)) if token_var else entry.get("access_token")
    return user, secret, token


def _mirror(name: str, entry: Any) -> Mirror:
    if isinstance(entry, str):
        return Mirror(name, entry)
    if not isinstance(entry, dict):
        raise MirrorError(f"Spack mirror {name!r}: unreadable entry {entry!r}")
    # The fetch side (what reads the cache): {url, fetch: {url, access_pair}, push: ...}.
    side = entry.get("fetch")
    merged = dict(entry)
    if isinstance(side, dict):
        merged.update(side)
    elif isinstance(side, str):
        merged["url"] = side
    url = merged.get("url")
    if not isinstance(url, str):
        raise MirrorError(f"Spack mirror {name!r} has no URL")
    return Mirror(name, url, *_credentials(merged))


def mirrors(spack: str | None = None, *, timeout: float = 120.0) -> dict[str, Mirror]:
    """Every mirror the Spack on ``PATH`` (or ``spack``) has configured, by name."""
    exe = spack or find_spack()
    if exe is None:
        raise MirrorError("no `spack` on PATH (nor $SPACK_ROOT/bin/spack) to read mirrors from")
    try:
        proc = subprocess.run(
            [exe, "python", "-c", _DUMP],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MirrorError(f"running {exe}: {e}") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise MirrorError(f"{exe} could not list its mirrors: {why}")
    try:
        config = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise MirrorError(f"{exe} printed no mirror list: {e}") from None
    return {str(n): _mirror(str(n), e) for n, e in dict(config).items()}
