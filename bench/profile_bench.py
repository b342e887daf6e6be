#!/usr/bin/env python3
"""Push throughput of builds of the engine made with different release profiles.

    python bench/profile_bench.py --wheel thin=dist-a/x.whl --wheel off=dist-b/y.whl --reps 5

Each wheel is unpacked into its own directory; the same prefixes as workload 1 of run.py (8
prefixes, real ELF libraries, text, random data) are pushed by each build in turn, in a child
interpreter with that directory on PYTHONPATH, to a fresh repository of one real registry on
127.0.0.1, alternating the order every repetition. Printed: median wall time and CPU time
(user + sys of the child) per build, and each build against the first one (the baseline):
> 1 means faster. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from registry import Registry  # noqa: E402
from run import du, make_prefix  # noqa: E402

PUSH = """
import sys, spack_oci_rs as oci
assert oci.__file__.startswith(sys.argv[3]), oci.__file__
items = [oci.PushItem(p.rsplit("/", 1)[1] + ".spack", prefix=p, prefixes_to_relocate=[sys.argv[2]])
         for p in sys.argv[4:]]
res = oci.push(sys.argv[1], items)
assert all(r.status == "pushed" for r in res), [str(r.error) for r in res]
"""


def push_once(site: Path, url: str, store: Path, prefixes: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of one push of every prefix by the build unpacked in `site`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", PUSH, url, str(store), str(site), *map(str, prefixes)],
        env={**os.environ, "PYTHONPATH": str(site)},
        check=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--wheel", action="append", required=True, metavar="LABEL=WHEEL")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    builds = dict(w.split("=", 1) for w in args.wheel)
    with tempfile.TemporaryDirectory(prefix="spack-oci-rs-profile-") as tmp:
        work = Path(tmp)
        sites = {}
        for label, wheel in builds.items():
            sites[label] = work / f"site-{label}"
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(sites[label])
        store = work / "store"
        sizes = [200 * w / 36 for w in range(1, 9)]  # as run.py's workload 1: 200 MiB asked
        prefixes = [make_prefix(store, f"pkg{i}", s, i) for i, s in enumerate(sizes)]
        print(f"{len(prefixes)} prefixes, {sum(map(du, prefixes)) / 2**20:.0f} MiB; {builds}")
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in builds}
        with Registry(work / "registry") as reg:
            for rep in range(args.reps):
                order = list(builds) if rep % 2 == 0 else list(reversed(builds))
                for label in order:
                    url = reg.repo_url(f"profile/{label}{rep}")
                    times[label].append(push_once(sites[label], url, store, prefixes))
                    print(f"  rep {rep} {label}: {times[label][-1][0]:.2f}s wall, "
                          f"{times[label][-1][1]:.2f}s CPU", flush=True)  # fmt: skip
    report(times)
    return 0


def report(times: dict[str, list[tuple[float, float]]]) -> None:
    base = next(iter(times))
    base_wall = statistics.median(w for w, _ in times[base])
    base_cpu = statistics.median(c for _, c in times[base])
    print("\n| build | wall (s), median | CPU (s), median | wall ratio | CPU ratio |")
    print("|---|---|---|---|---|")
    for label, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        spread = (max(w for w, _ in runs) - min(w for w, _ in runs)) / 2
        print(f"| {label} | {wall:.2f} ±{spread:.2f} | {cpu:.2f} | "
              f"{base_wall / wall:.3f}x | {base_cpu / cpu:.3f}x |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
