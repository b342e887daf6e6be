"""What the CLI shows while it works, on stderr.

On a terminal: one line redrawn in place with bytes done / total, rate and ETA, fed by the
engine's ``("bytes", {"done", "total"})`` progress events; item lines (one per tag, blob or
layer) are printed above it. Into a pipe or a CI log: the item lines only, nothing redrawn.
Quiet: nothing (errors are printed by the caller).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Reporter", "human_bytes"]


def human_bytes(n: float) -> str:
    """``1.5 MiB`` (``512 B`` below a KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def _clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Reporter:
    """Progress and item lines for one command.

    Args:
        label: the verb shown at the start of the redrawn line (``copy``, ``fetch``).
        quiet: print nothing.
        stream: where to write (stderr); redrawing happens only when it is a terminal.
        total: bytes expected, when the caller knows it better than the events.
    """

    def __init__(
        self,
        label: str,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        total: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = not quiet and self.stream.isatty()
        self.total = total
        self.done = 0
        self._clock = clock
        self._start = clock()
        self._drawn = False

    def line(self) -> str:
        """The progress line for the current counts."""
        elapsed = max(self._clock() - self._start, 1e-3)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        text = f"{self.label} {human_bytes(self.done)}"
        if total:
            text += f" / {human_bytes(total)} {100 * self.done // total:3d}%"
        text += f"  {human_bytes(rate)}/s"
        if total and rate > 0 and self.done < total:
            text += f"  ETA {_clock((total - self.done) / rate)}"
        return text

    def update(self, done: int, total: int = 0) -> None:
        """New byte counts (``total`` 0: keep the one known)."""
        self.done = done
        self.total = max(self.total, total)
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
            self._drawn = True

    def item(self, text: str) -> None:
        """One line about one item: above the progress line on a terminal, plain otherwise."""
        if self.quiet:
            return
        if self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self._drawn:
            self.stream.write(self.line())
        self.stream.flush()

    def close(self) -> None:
        """Remove the progress line."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def on_event(self, event: str, info: dict[str, Any]) -> None:
        """A progress callback for the engine's functions (``bytes`` events)."""
        if event == "bytes":
            self.update(int(info["done"]), int(info.get("total") or 0))
