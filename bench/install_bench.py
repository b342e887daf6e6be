"""``spack -e . install --cache-only`` of a 100-spec environment: 0 ms vs 20 ms per request.

Spack runs from an unmodified tree (``--spack``, default v1.1.0) with the plugin of the
installed wheel (``config:oci_backend:rust``) and with Spack's own Python backend; the build
cache is pushed once by the engine into a real registry, then each install (uninstall all,
empty download caches) goes straight to the registry (0 ms) or through ``latency_proxy`` at
10 ms each way. Requests through the proxy are counted. Best of ``--reps`` per cell, same run.
``python bench/install_bench.py [--count 100] [--reps 2] [--installer new]``; the table goes
to stdout (and ``bench/RESULTS.md`` with ``--record``).
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

from latency_proxy import LatencyProxy  # noqa: E402
from registry import Registry  # noqa: E402
from results import report  # noqa: E402
from spack_env import SpackEnv, many_name  # noqa: E402


def install(env: SpackEnv, env_dir: Path, mirror: str, url: str, count: int) -> float:
    env.mirror_add(mirror, url)
    env.uninstall_all()
    env.clear_download_caches()
    run = env.run("-e", env_dir, "install", "--cache-only", "--no-check-signature", input="")
    env.mirror_remove(mirror)
    done = run.stdout.count("from binary cache")
    if done != count:
        raise RuntimeError(f"{done} of {count} specs from the cache:\n{run.stdout[-3000:]}")
    return run.duration


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--spack", default="/tmp/spack-trees/spack-v1.1.0")
    ap.add_argument("--installer", choices=("old", "new"), default="old")
    ap.add_argument("--backends", default="rust,python")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "reg") as reg:
        env = SpackEnv.create(Path(tmp) / "env", spack_root=Path(args.spack), many=args.count)
        env_dir = env.write_environment(Path(tmp) / "e", [many_name(i) for i in range(args.count)])
        if args.installer == "new":
            env.run("config", "add", "config:installer:new")
        version = env.version()
        print(f"building {args.count} specs (Spack {version})", flush=True)
        env.run("-e", env_dir, "install", input="")
        env.run("config", "add", "config:oci_backend:rust")
        env.mirror_add("seed", reg.repo_url("bench/install"))
        env.run("-e", env_dir, "buildcache", "push", "--unsigned", "--update-index", "seed")
        env.mirror_remove("seed")
        rows = []
        with LatencyProxy(("127.0.0.1", reg.port), 0.010) as proxy:
            for b in args.backends.split(","):
                env.run("config", "add", f"config:oci_backend:{b}")
                cell: dict[str, tuple[float, int]] = {}
                for label, host in (("0 ms", reg.host), ("20 ms", proxy.host)):
                    best, sent = float("inf"), 0
                    for rep in range(args.reps):
                        before = proxy.requests
                        url = f"oci+http://{host}/bench/install"
                        s = install(env, env_dir, f"m{rep}", url, args.count)
                        best, sent = min(best, s), proxy.requests - before
                        print(f"  {b} {label} rep {rep}: {s:.2f} s, {sent} requests", flush=True)
                    cell[label] = (best, sent)
                slow, fast = cell["20 ms"][0], cell["0 ms"][0]
                rows.append(
                    f"| {b} | {fast:.2f} | {slow:.2f} | {slow / fast:.2f}x | {cell['20 ms'][1]} |"
                )
        load = os.getloadavg()
    head = [
        f"## install --cache-only, {args.count} specs ({time.strftime('%Y-%m-%d')}, Spack "
        f"{version}, installer {args.installer}, best of {args.reps}, load "
        f"{load[0]:.1f})",
        "",
        "| backend | 0 ms (s) | 20 ms/req (s) | 20 ms / 0 ms | requests @20 ms |",
        "|---|---|---|---|---|",
    ]
    text = "\n".join(head + rows) + "\n"
    report(text, record=args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
