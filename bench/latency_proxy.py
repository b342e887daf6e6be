"""A TCP proxy on loopback that adds a fixed one-way delay in each direction.

The machines have no ``tc netem``; this stands in for a registry 10-25 ms away. The proxy is
``examples/latency_proxy.rs`` (tokio, in its own process, built here with cargo on first
use), so that it is not itself the bottleneck: an asyncio proxy in the benchmark's process
forwarded ~350 requests/s where the registry answers ~870/s. Every chunk read from one side
is written to the other ``delay`` seconds after it arrived (in order, not cumulatively), so a
request/response round trip costs ``2 * delay`` and bandwidth is not limited. Stopped with
:meth:`LatencyProxy.stop` (or as a context manager).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "examples" / "latency_proxy"


def build() -> Path:
    """``cargo build --release --example latency_proxy`` (a no-op when it is up to date)."""
    cmd = ["cargo", "build", "--quiet", "--release", "--example", "latency_proxy"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return BINARY


class LatencyProxy:
    """Forward 127.0.0.1:<port> to ``target`` (host, port) with ``delay`` seconds each way."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        if target[0] not in ("127.0.0.1", "localhost"):
            raise ValueError(f"latency proxy: loopback targets only, not {target[0]}")
        self.target = target
        self.delay = delay
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _counts(self) -> tuple[int, int]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("latency proxy is not running")
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        _, requests, _, connections = proc.stdout.readline().split()
        return int(requests), int(connections)

    @property
    def requests(self) -> int:
        """HTTP/1.1 requests seen (client chunks that start with a method)."""
        return self._counts()[0]

    @property
    def connections(self) -> int:
        return self._counts()[1]

    def start(self) -> LatencyProxy:
        args = [str(build()), str(self.target[1]), str(self.delay * 1000)]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            self.stop()
            raise RuntimeError(f"latency proxy did not start (it said {line!r})")
        self.port = int(line[1])
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
