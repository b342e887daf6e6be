"""What byte progress costs a push: the same prefix pushed with ``progress=`` (the CLI's
``Reporter`` drawing the byte line into a pseudo-terminal-like sink) and without, runs
interleaved in one process, same registry, fresh tags (``force=True``).

``python bench/push_progress_bench.py [--mib N] [--reps R]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import spack_oci_rs as oci  # noqa: E402
from registry import Registry  # noqa: E402
from spack_oci_rs.progress import Reporter  # noqa: E402


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "reg") as reg:
        prefix = Path(tmp) / "store" / "big-1.0-abcdef"
        (prefix / "lib").mkdir(parents=True)
        (prefix / "lib" / "data.bin").write_bytes(os.urandom(args.mib << 20))
        ref = reg.repo_url("bench")
        times: dict[str, list[float]] = {"off": [], "on": []}
        events = 0
        for rep in range(args.reps):
            for mode in ("off", "on"):
                reporter = Reporter("push", stream=_Tty())
                item = oci.PushItem(f"t{rep}{mode}", prefix=prefix)
                start = time.perf_counter()
                (r,) = oci.push(
                    ref, [item], force=True, progress=reporter.on_event if mode == "on" else None
                )
                times[mode].append(time.perf_counter() - start)
                assert r.status == "pushed", r.error
                events += reporter.done > 0
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        print("| workload | with progress (s) | without (s) | ratio |\n|---|---|---|---|")
        print(
            f"| push one {args.mib} MiB prefix, median of {args.reps} | {on:.2f} | {off:.2f} | {on / off:.3f} |"
        )
        assert events == args.reps


if __name__ == "__main__":
    main()
