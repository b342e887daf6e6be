"""The ``spack-oci-rs`` command (run as ``python -m spack_oci_rs``) against a real registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from registry import Registry


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "spack_oci_rs", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_push_dir_tags_inspect_fetch_index_doctor(
    registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    d = tmp_path / "tool"
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    ref = registry.repo_url(repo_name)

    pushed = json.loads(cli("push-dir", str(d), f"{ref}:tool-1.0.spack", "--json").stdout)
    assert pushed["status"] == "pushed" and pushed["manifest_digest"].startswith("sha256:")
    assert json.loads(cli("tags", ref, "--json").stdout) == ["tool-1.0.spack"]

    inspected = json.loads(cli("inspect", f"{ref}:tool-1.0.spack", "--json").stdout)
    assert inspected["manifest"]["layers"][-1]["digest"] == pushed["layer_digest"]
    text = cli("inspect", f"{ref}:tool-1.0.spack").stdout
    assert "layers       1" in text

    out = tmp_path / "out"
    fetched = json.loads(cli("fetch", f"{ref}:tool-1.0.spack", str(out), "--json").stdout)
    assert all(f["ok"] for f in fetched) and len(fetched) == 2
    blob = tmp_path / "layer.tar.gz"
    cli("fetch", f"{ref}@{pushed['layer_digest']}", str(blob))
    assert blob.stat().st_size == pushed["size"]

    assert cli("index", ref, check=False).returncode == 1  # no index yet
    gathered = json.loads(cli("index", ref, "--rebuild", "--json").stdout)
    assert gathered["spec_tags"] == 1

    doctor = json.loads(cli("doctor", ref, "--json").stdout)
    assert doctor["pull"]["ok"] and doctor["push"]["ok"]
    assert doctor["range"] is True and doctor["mount"] is True
    assert doctor["http_version"] == "HTTP/1.1"


def test_errors_and_exit_codes(tmp_path: Path) -> None:
    down = cli("tags", "oci+http://127.0.0.1:9/x", "--retries", "1", check=False)
    assert down.returncode == 1
    assert down.stderr.startswith("error: ") and "127.0.0.1:9" in down.stderr
    assert "Traceback" not in down.stderr
    bad = cli("tags", "not a ref", check=False)
    assert bad.returncode == 1 and "not a ref" in bad.stderr
    usage = cli("frobnicate", check=False)
    assert usage.returncode == 2
    assert cli("--version").stdout.startswith("spack-oci-rs ")
