"""Ctrl-C and processes: SIGINT to a child process in the middle of a transfer (through a
slow or stalling fault proxy) stops it within about a second with KeyboardInterrupt and
leaves no temp file; a forked child works while its parent is busy transferring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import spack_oci_rs as oci
from faultproxy import Fault, FaultProxy
from registry import Registry

BLOB = r"/blobs/sha256:"

#: Time from SIGINT to KeyboardInterrupt in the child (the engine checks every 100 ms).
MAX_REACTION = 1.0

# The child prints the monotonic time at which KeyboardInterrupt reached it (CLOCK_MONOTONIC
# is system-wide on Linux, so the parent can compare it with the time it sent SIGINT).
CHILD_PRELUDE = textwrap.dedent(
    """
    import sys, time
    import spack_oci_rs as oci
    def interrupted():
        print("interrupted", time.monotonic(), flush=True)
        sys.exit(42)
    """
)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.host) as p:
        yield p


def run_and_interrupt(
    code: str, ready: Callable[[], bool], *, timeout: float = 30
) -> tuple[float, str]:
    """Start ``code`` in a child Python, wait until ``ready()``, send SIGINT; returns the
    delay until the child saw KeyboardInterrupt, and its output."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if child.poll() is not None or time.monotonic() > deadline:
                out = child.communicate()[0]
                pytest.fail(f"the child never got ready (exit {child.returncode}):\n{out}")
            time.sleep(0.02)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out = child.communicate(timeout=timeout)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 42, out
    line = next(x for x in out.splitlines() if x.startswith("interrupted "))
    delay = float(line.split()[1]) - sent
    print(f"SIGINT -> KeyboardInterrupt in {delay:.3f}s")
    return delay, out


def files(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*"))


def test_ctrl_c_during_fetch(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    data = os.urandom(8 * 1024 * 1024)
    digest, _ = oci.upload_blob(registry.repo_url(repo_name), data)
    proxy.add(Fault.slow(1_000_000), "GET", BLOB, times=None)  # 8 s for the whole blob
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = f"""
        try:
            oci.fetch_blob({proxy.repo_url(repo_name)!r}, {digest!r}, {str(out_dir / "blob")!r})
        except KeyboardInterrupt:
            interrupted()
        """

    def ready() -> bool:  # some bytes are in the temp file
        return any(p.name.endswith(".part") and p.stat().st_size > 0 for p in out_dir.iterdir())

    delay, out = run_and_interrupt(code, ready)
    assert delay < MAX_REACTION, out
    assert files(out_dir) == []


def test_ctrl_c_during_fetch_blobs_with_a_stall(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """Several downloads, one stalled (longer than any timeout): all stop, nothing stays."""
    ref = registry.repo_url(repo_name)
    digests = [oci.upload_blob(ref, os.urandom(2_000_000))[0] for _ in range(4)]
    proxy.add(Fault.stall(60, after=100_000), "GET", BLOB, times=None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    reqs = [(proxy.repo_url(repo_name), d, str(out_dir / d[7:])) for d in digests]
    code = f"""
        try:
            oci.fetch_blobs({reqs!r}, client=oci.Client(read_timeout=120))
        except KeyboardInterrupt:
            interrupted()
        """

    def ready() -> bool:
        parts = [p for p in out_dir.iterdir() if p.name.endswith(".part")]
        return len(parts) == 4 and all(p.stat().st_size > 0 for p in parts)

    delay, out = run_and_interrupt(code, ready)
    assert delay < MAX_REACTION, out
    assert files(out_dir) == []


def make_prefix(root: Path, size: int) -> Path:
    prefix = root / "store" / "big-1.0-abcdef"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "data.bin").write_bytes(os.urandom(size))
    (prefix / ".spack").mkdir()
    (prefix / ".spack" / "spec.json").write_text("{}")
    return prefix


@pytest.mark.parametrize("stage", ["archiving", "uploading"])
def test_ctrl_c_during_push_with_temp_file(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path, stage: str
) -> None:
    """``stream_layers=False``: the layer goes to a temp file first. Ctrl-C while it is
    being written, or while the upload waits on a slow registry, removes it."""
    prefix = make_prefix(tmp_path, 48 * 1024 * 1024 if stage == "archiving" else 1_000_000)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proxy.add(Fault.delay(60), "POST", r"/blobs/uploads/$", times=None)
    code = f"""
        item = oci.PushItem("big.spack", prefix={str(prefix)!r})
        try:
            oci.push({proxy.repo_url(repo_name)!r}, [item], stream_layers=False,
                     tmpdir={str(tmp)!r})
        except KeyboardInterrupt:
            interrupted()
        """

    def ready() -> bool:
        temp = [p for p in tmp.iterdir() if p.name.startswith(".spack-oci-layer-")]
        if stage == "archiving":
            return bool(temp) and temp[0].stat().st_size > 0
        return proxy.count("POST", r"/blobs/uploads/$") > 0

    delay, out = run_and_interrupt(code, ready)
    assert delay < MAX_REACTION, out
    assert files(tmp) == []
    assert "big.spack" not in registry.list_tags(repo_name)


def test_ctrl_c_during_streamed_push(
    proxy: FaultProxy, registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """A layer streamed into a slow registry: Ctrl-C stops it, and no image appears."""
    prefix = make_prefix(tmp_path, 12_000_000)  # above SMALL_PREFIX: streamed
    proxy.add(Fault.delay(60), "PATCH", times=None)
    code = f"""
        item = oci.PushItem("big.spack", prefix={str(prefix)!r})
        try:
            oci.push({proxy.repo_url(repo_name)!r}, [item])
        except KeyboardInterrupt:
            interrupted()
        """
    delay, out = run_and_interrupt(code, lambda: proxy.count("PATCH") > 0)
    assert delay < MAX_REACTION, out
    assert "big.spack" not in registry.list_tags(repo_name)


def test_fork_while_the_parent_transfers(
    registry: Registry, repo_name: str, tmp_path: Path
) -> None:
    """Children forked while a parent thread is in the middle of transfers get their own
    runtime and connections: they work, and the parent's transfers go on."""
    ref = registry.repo_url(repo_name)
    digest, _ = oci.upload_blob(ref, os.urandom(500_000))
    code = textwrap.dedent(
        f"""
        import os, sys, threading, time, warnings
        import spack_oci_rs as oci
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
        ref, digest, out = {ref!r}, {digest!r}, {str(tmp_path)!r}
        shared = oci.Client()
        stop = threading.Event()
        done = [0]
        def busy():
            while not stop.is_set():
                oci.fetch_blob(ref, digest, f"{{out}}/busy", client=shared)
                done[0] += 1
        t = threading.Thread(target=busy)
        t.start()
        while done[0] == 0:
            time.sleep(0.01)
        for i in range(4):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:
                try:
                    ok = oci.blob_exists(ref, digest, client=shared)
                    oci.fetch_blob(ref, digest, f"{{out}}/child-{{i}}")
                    d, up = oci.upload_blob(ref, f"child {{i}}".encode(), client=shared)
                    os._exit(0 if ok and up else 3)
                except BaseException as e:
                    print("child error:", e, flush=True)
                    os._exit(4)
            deadline = time.monotonic() + 30
            while True:
                wpid, status = os.waitpid(pid, os.WNOHANG)
                if wpid:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    print("child", i, "hung", flush=True)
                    sys.exit(5)
                time.sleep(0.01)
            if os.waitstatus_to_exitcode(status) != 0:
                print("child", i, "failed", status, flush=True)
                sys.exit(6)
        before = done[0]
        time.sleep(0.2)
        stop.set()
        t.join(30)
        assert not t.is_alive() and done[0] > before, "the parent's transfers stopped"
        print("ok", done[0], flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
    for i in range(4):
        assert (tmp_path / f"child-{i}").stat().st_size == 500_000
