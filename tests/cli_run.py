"""Running the ``spack-oci-rs`` command (``python -m spack_oci_rs``) as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The command with ``args``, its output captured as text; ``env`` is the whole
    environment (None: this process's)."""
    return subprocess.run(
        [sys.executable, "-m", "spack_oci_rs", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=None if env is None else dict(env),
    )
