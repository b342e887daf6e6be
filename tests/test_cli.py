"""The ``spack-oci-rs`` command (run as ``python -m spack_oci_rs``) against a real registry."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import spack_oci_rs as oci
from cli_run import run_cli
from registry import Registry


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run_cli(*args)
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


def _cache(registry: Registry, repo: str, tmp_path: Path, n: int = 3) -> str:
    ref = registry.repo_url(repo)
    for i in range(n):
        d = tmp_path / f"t{i}"
        (d / "bin").mkdir(parents=True)
        (d / "bin" / "tool").write_bytes(bytes([i]) * 300_000)
        cli("push-dir", str(d), f"{ref}:t{i}-1.0.spack")
    return ref


def test_streams_exit_codes_and_json_errors(
    registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    ref = _cache(registry, repo_name, tmp_path, n=1)
    ok = cli("tags", ref)
    assert ok.stdout == "t0-1.0.spack\n" and ok.stderr == ""
    # A misspelt repository is an error naming it, not an empty list.
    missing = cli("tags", ref + "-typo", check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "does not exist" in missing.stderr and repo_name + "-typo" in missing.stderr
    as_json = cli("tags", ref + "-typo", "--json", check=False)
    assert as_json.returncode == 1
    err = json.loads(as_json.stdout)
    assert err["error"] == "NotFoundError" and "does not exist" in err["message"]
    # Bad option values are usage errors (2), found before any request.
    for bad in (["--retries", "-3"], ["--retries", "x"]):
        usage = cli("tags", ref, *bad, check=False)
        assert usage.returncode == 2 and "--retries" in usage.stderr and usage.stdout == ""
    assert cli("copy", ref, ref + "-2", "--jobs", "0", check=False).returncode == 2
    assert cli("tags", ref, "--username", "u", check=False).returncode == 2
    for proc in (missing, as_json):
        assert "Traceback" not in proc.stderr


def test_push_dir_missing_dir_fails_fast_without_requests(registry: Registry) -> None:
    since = registry.log_offset()
    start = time.monotonic()
    proc = cli("push-dir", "/no/such/dir", registry.repo_url("x") + ":t", check=False)
    assert time.monotonic() - start < 5  # a Python start-up; no retries
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "/no/such/dir" in proc.stderr
    assert "/v2/" not in registry.log(since)


def test_closed_pipe_ends_quietly(registry: Registry, repo_name: str, tmp_path: Path) -> None:
    ref = registry.repo_url(repo_name)
    for i in range(300):
        oci.upload_manifest(f"{ref}:tag-{i:04d}", _tiny_manifest(ref))
    proc = subprocess.run(
        f"{sys.executable} -m spack_oci_rs tags {ref} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout == "tag-0000\n"
    assert proc.stderr == ""


def _tiny_manifest(ref: str, client: oci.Client | None = None) -> dict[str, object]:
    config = b"{}"
    digest, _ = oci.upload_blob(ref, config, client=client)
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest,
            "size": len(config),
        },
        "layers": [],
    }


def _fake_spack(tmp_path: Path, mirrors: dict[str, object]) -> dict[str, str]:
    """A `spack` on PATH answering `spack python -c ...` with these mirrors."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    exe = bindir / "spack"
    exe.write_text(f"#!/bin/sh\necho '{json.dumps(mirrors)}'\n")
    exe.chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_mirror_names_via_the_spack_on_path(
    auth_registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    url = auth_registry.repo_url(repo_name)
    client = _auth(auth_registry)
    oci.upload_manifest(f"{url}:only.spack", _tiny_manifest(url, client), client=client)
    mirror = {"url": url, "access_pair": {"id_variable": "RS_USER", "secret_variable": "RS_PASS"}}
    env = _fake_spack(tmp_path, {"rs": mirror, "plain": "file:///tmp/x"})
    env |= {"RS_USER": str(auth_registry.username), "RS_PASS": str(auth_registry.password)}
    ca = ["--ca-cert", str(auth_registry.ca_file)]
    by_flag = cli_env(env, "tags", "--mirror", "rs", *ca)
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout == "only.spack\n"
    bare = cli_env(env, "tags", "rs", *ca)
    assert bare.returncode == 0 and bare.stdout == "only.spack\n"
    assert "Spack mirror rs" in bare.stderr and url in bare.stderr
    inspected = cli_env(env, "inspect", "--mirror", "rs", "only.spack", "--json", *ca)
    assert json.loads(inspected.stdout)["manifest"]["layers"] == []
    doctor = cli_env(env, "doctor", "rs", "--json", *ca)
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["repository"] == repo_name
    # Any other bare word is said to be read as a Docker Hub image (the usage error after
    # that keeps the test on loopback: no request is sent).
    other = cli_env(env, "tags", "nomirror", "--username", "u")
    assert other.returncode == 2
    assert (
        "'nomirror' is no Spack mirror: read as index.docker.io/library/nomirror" in other.stderr
    )
    nosuch = cli_env(env, "tags", "--mirror", "nope")
    assert nosuch.returncode == 2 and "rs" in nosuch.stderr
    notoci = cli_env(env, "tags", "--mirror", "plain")
    assert notoci.returncode == 2 and "not an OCI mirror" in notoci.stderr


def _auth(reg: Registry) -> oci.Client:
    assert reg.ca_file is not None
    return oci.Client(
        credentials={reg.host: (str(reg.username), str(reg.password))}, ca_certs=[reg.ca_file]
    )


def cli_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**os.environ, **env})


def _on_a_tty(*args: str) -> str:
    """What ``spack-oci-rs ARGS`` writes under a pseudo-terminal (stdout and stderr a TTY)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execv(sys.executable, [sys.executable, "-m", "spack_oci_rs", *args])
    seen = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    return seen.decode()


def test_progress_redrawn_on_a_tty_not_in_a_pipe(
    registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    ref = _cache(registry, new_repo("src"), tmp_path)
    dst = registry.repo_url(new_repo("dst"))
    # Under a pseudo-terminal (stderr a TTY): one line redrawn with \r, bytes and a rate.
    text = _on_a_tty("fetch", f"{ref}:t0-1.0.spack", str(tmp_path / "tty"))
    assert "\r\x1b[Kfetch " in text and "/s" in text and "%" in text
    # Into a pipe: no redrawing; copy prints one line per tag on stderr; --quiet nothing.
    piped = cli("copy", ref, dst)
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert len([line for line in piped.stderr.splitlines() if line.startswith("copied")]) == 3
    quiet = cli("copy", ref, registry.repo_url(new_repo("q")), "--quiet")
    assert quiet.stdout == "" and quiet.stderr == ""


def test_push_dir_progress_redrawn_on_a_tty_not_in_a_pipe(
    registry: Registry, new_repo: Callable[[str], str], tmp_path: Path
) -> None:
    d = tmp_path / "big"
    (d / "lib").mkdir(parents=True)
    # More than SMALL_PREFIX (8 MiB): the streamed path.
    (d / "lib" / "data.bin").write_bytes(os.urandom(9 << 20))
    (d / "README").write_text("hello\n")
    repo = registry.repo_url(new_repo("pushprog"))
    text = _on_a_tty("push-dir", str(d), f"{repo}:big-1.0.spack")
    # The byte line, redrawn: done / total of the 9 MiB read, a percentage, a rate; it ends
    # at 100% and is cleared before the layer line and the result.
    redraws = [part for part in text.split("\r\x1b[K") if part.startswith("push ")]
    assert redraws, text
    assert all("/s" in r and "%" in r and "9.0 MiB" in r for r in redraws), redraws
    assert any("100%" in r for r in redraws), redraws
    assert "layer sha256:" in text and "pushed " in text
    # Into a pipe: the layer line only, nothing redrawn; --quiet: nothing.
    piped = cli("push-dir", str(d), f"{repo}:big-2.0.spack")
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    lines = piped.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("layer sha256:"), piped.stderr
    quiet = cli("push-dir", str(d), f"{repo}:big-3.0.spack", "--quiet")
    assert quiet.stdout == "" and quiet.stderr == ""
