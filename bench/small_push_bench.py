"""Small pushes through Spack: ``spack buildcache push`` of 1, 2, 10 and 100 specs into an
empty cache, then the same push again (every spec exists: a no-op), Rust backend vs Spack's
Python backend, through ``latency_proxy`` at 20 ms per request round trip, same run.

Spack runs from an unmodified tree (``--spack``, default v1.1.0) with the plugin of the
installed wheel; the specs are generated ``oci-many-<i>`` packages (4 KiB of data each, no
dependencies), built once. Each cell is the best of ``--reps`` fresh repositories; the
requests each push sent through the proxy are counted. The engine's fixed start-up cost is
measured in fresh processes (``index_bench.startup``). ``python bench/small_push_bench.py
[--sizes 1,2,10,100] [--reps 3] [--record]``; the table goes to stdout (and
``bench/RESULTS.md`` with ``--record``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from index_bench import startup  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from registry import Registry  # noqa: E402
from results import report  # noqa: E402
from spack_env import SpackEnv, many_name  # noqa: E402

#: (seconds, requests) of the push and the re-push
Cell = tuple[tuple[float, int], tuple[float, int]]


def push_twice(env: SpackEnv, proxy: LatencyProxy, repo: str, specs: list[str]) -> Cell:
    """Push ``specs`` into the empty ``repo`` through ``proxy``, then again."""
    env.mirror_add("small", f"oci+http://{proxy.host}/{repo}")
    out = []
    for _ in range(2):
        before = proxy.requests
        run = env.push("small", *specs)
        out.append((run.duration, proxy.requests - before))
    env.mirror_remove("small")
    return out[0], out[1]


def best(cells: list[Cell]) -> Cell:
    push = min(c[0] for c in cells)
    again = min(c[1] for c in cells)
    return push, again


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2,10,100")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--spack", default="/tmp/spack-trees/spack-v1.1.0")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # real users have bytecode
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "reg") as reg:
        env = SpackEnv.create(Path(tmp) / "env", spack_root=Path(args.spack), many=max(sizes))
        names = [many_name(i) for i in range(max(sizes))]
        version = env.version()
        print(f"building {len(names)} specs (Spack {version})", flush=True)
        env.install(*names)
        with LatencyProxy(("127.0.0.1", reg.port), 0.010) as proxy:
            for n in sizes:
                cells: dict[str, Cell] = {}
                for backend in ("python", "rust"):
                    env.run("config", "add", f"config:oci_backend:{backend}")
                    reps = []
                    for rep in range(args.reps):
                        reps.append(
                            push_twice(env, proxy, f"bench/small-{backend}-{n}-{rep}", names[:n])
                        )
                        print(f"  {n} specs, {backend} rep {rep}: {reps[-1]}", flush=True)
                    cells[backend] = best(reps)
                (pp, pr), (rp, rr) = cells["python"], cells["rust"]
                rows.append(
                    f"| {n} | {pp[0]:.2f} | {rp[0]:.2f} | {rp[0] / pp[0]:.2f} | {pr[0]:.2f} | "
                    f"{rr[0]:.2f} | {rr[0] / pr[0]:.2f} | {pp[1]} / {pr[1]} | {rp[1]} / {rr[1]} |"
                )  # fmt: skip
        load = os.getloadavg()[0]
        out = [
            f"## Small pushes ({time.strftime('%Y-%m-%d')}, Spack {version}, 20 ms per request, "
            f"best of {args.reps}, load {load:.1f})",
            "",
            "| specs | push Python (s) | push Rust (s) | Rust/Python | re-push Python (s) | "
            "re-push Rust (s) | Rust/Python | requests Python push / re-push | "
            "requests Rust push / re-push |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
        startup(out, Path(tmp))
    text = "\n".join(out) + "\n"
    report(text, record=args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
