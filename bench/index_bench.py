"""Index cost as caches grow: Rust engine vs Spack's Python backend, same run.

Rows (through ``latency_proxy`` at 20 ms per request round trip; its own request rate is
measured first and shown):

1. push --update-index of one new spec into caches of 300, 2,000 and 10,000 spec tags:
   Rust (image push + merge) vs Spack's ``_oci_update_index`` (a full rebuild; the image push
   itself is not counted for Python, which favours it); the Rust push without the index too.
2. update-index of the 10,000-tag cache: cold (no state), warm (nothing changed) and after
   100 new tags, requests and seconds; Spack's Python once (cold: it has no state).
3. index.json for 10,000 specs from their configs: Rust ``index_json`` vs Spack's
   ``BuildCacheDatabase`` (seconds, peak RSS of a fresh process).

Synthetic caches: tiny images (one shared layer, a realistic spec config each) pushed
straight through the engine. Spack's Python runs by importing ``<tree>/lib/spack`` (v1.1.0
unless ``--spack``), with Spack's own executor for its fetches at 16 processes (Spack
uses ``build_jobs`` processes: 2 on this machine, which would be slower). ``python bench/index_bench.py [--quick]``; figures to stdout and
``bench/RESULTS.md`` (section "Index cost").
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from index_corpus import flat_corpus  # noqa: E402
from spec_images import fill, put_image, shared_layer  # noqa: E402

import spack_oci_rs as oci  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from registry import Registry  # noqa: E402
from results import report  # noqa: E402

_SPACK_UPDATE = """
import sys, time, tempfile
sys.path.insert(0, sys.argv[1] + "/lib/spack")
import spack.binary_distribution as bd
import spack.util.parallel
from spack.oci.image import ImageReference
ref = ImageReference.from_url(sys.argv[2])
t = time.perf_counter()
with spack.util.parallel.make_concurrent_executor(16) as pool:
    bd._oci_update_index(ref, tempfile.mkdtemp(), pool)
print(time.perf_counter() - t)
"""

_SPACK_DB = """
import json, resource, sys, tempfile, time, io
sys.path.insert(0, sys.argv[1] + "/lib/spack")
import spack.binary_distribution as bd, spack.spec
configs = [json.loads(c) for c in json.load(open(sys.argv[2]))]
t = time.perf_counter()
db = bd.BuildCacheDatabase(tempfile.mkdtemp())
for c in configs:
    s = spack.spec.Spec.from_dict(c)
    db.add(s)
    db.mark(s, "in_buildcache", True)
out = io.StringIO()
db._write_to_file(out)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

_RUST_DB = """
import json, resource, sys, time
from spack_oci_rs import index_json
configs = [(str(i), c.encode()) for i, c in enumerate(json.load(open(sys.argv[1])))]
t = time.perf_counter()
data, skipped = index_json(configs, targets="{}")
assert not skipped
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def proxy_rate(reg: Registry) -> str:
    """Requests per second the proxy forwards at 0 ms, vs direct (64 in flight)."""
    client = oci.Client()
    digest, _ = oci.upload_blob(reg.repo_url("bench/rate"), b"x")

    def rate(host: str) -> float:
        ref = f"oci+http://{host}/bench/rate"
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            list(pool.map(lambda _: oci.blob_exists(ref, digest, client=client), range(3000)))
        return 3000 / (time.perf_counter() - t)

    direct = rate(reg.host)
    with LatencyProxy(("127.0.0.1", reg.port), 0.0) as p:
        proxied = rate(p.host)
    return f"latency proxy: {proxied:,.0f} requests/s at 0 ms vs {direct:,.0f} direct (3,000 HEADs, 64 in flight)"


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def spack_update(tree: Path, url: str) -> float:
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-c", _SPACK_UPDATE, str(tree), url],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"Spack's _oci_update_index failed: {proc.stderr[-3000:]}")
    return float(proc.stdout.split()[-1])


def row1(reg: Registry, proxy: LatencyProxy, tree: Path, sizes: list[int], out: list[str]) -> str:
    repo = "bench/index"
    ref, pref = reg.repo_url(repo), f"oci+http://{proxy.host}/{repo}"
    configs = flat_corpus(sizes[-1] + 200, seed=18)
    new = configs[sizes[-1] :]
    out.append("| cache | Rust push | Rust push --update-index | requests | Python update-index |")
    out.append("|---|---|---|---|---|")
    have = 0
    for i, n in enumerate(sizes):
        print(f"row 1: {n:,} tags", flush=True)
        fill(ref, configs[have:n])
        have = n
        oci.update_index(ref, targets="{}")  # the cache's index, current
        tag, config = new[2 * i]
        layer = shared_layer(pref)
        push_s, _ = timed(lambda: put_image(pref, tag, config, layer))
        tag, config = new[2 * i + 1]
        before = proxy.requests
        both_s, _ = timed(lambda: (put_image(pref, tag, config, layer),
                                   oci.update_index(pref, merge=[tag], targets="{}")))  # fmt: skip
        sent = proxy.requests - before
        py = spack_update(tree, pref)
        out.append(f"| {n:,} tags | {push_s:.2f} s | {both_s:.2f} s | {sent} | {py:.2f} s |")
    return ref


def row2(reg: Registry, proxy: LatencyProxy, tree: Path, n: int, out: list[str]) -> None:
    repo = "bench/index"
    pref = f"oci+http://{proxy.host}/{repo}"
    # Spack's Python first: its rebuild writes an index without the tag map, which would turn
    # the Rust warm run after it into a cold one.
    print(f"row 2: Python update-index of {n:,}+ tags (cold)", flush=True)
    py = spack_update(tree, pref)
    oci.upload_index(reg.repo_url(repo), b'{"database":{"version":"8","installs":{}}}')  # no state
    out.append("")
    out.append(f"| update-index, {n:,}+ tags | Rust s | Rust requests | Python s |")
    out.append("|---|---|---|---|")
    for label in ("cold", "warm", "after 100 new"):
        if label == "after 100 new":
            fill(reg.repo_url(repo), flat_corpus(100, seed=99))
        print(f"row 2: Rust update-index ({label})", flush=True)
        before = proxy.requests
        s, r = timed(lambda: oci.update_index(pref, targets="{}"))
        sent = proxy.requests - before
        cell = f"{py:.2f}" if label == "cold" else "(a full rebuild, as cold)"
        out.append(
            f"| {label} | {s:.2f} | {sent} ({r.fetched} fetched, {r.reused} reused) | {cell} |"
        )


def row3(tree: Path, n: int, work: Path, out: list[str]) -> None:
    configs = [c.decode() for _, c in flat_corpus(n, seed=5)]
    path = work / "configs.json"
    path.write_text(json.dumps(configs))
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rs = subprocess.run([sys.executable, "-c", _RUST_DB, str(path)], capture_output=True,
                        text=True, check=True).stdout.split()  # fmt: skip
    py = subprocess.run([sys.executable, "-c", _SPACK_DB, str(tree), str(path)],
                        capture_output=True, text=True, check=True, env=env).stdout.split()  # fmt: skip
    out.append("")
    out.append(f"| index.json of {n:,} specs | seconds | peak RSS |")
    out.append("|---|---|---|")
    out.append(f"| Rust index_json | {float(rs[0]):.2f} | {int(rs[1]) / 1024:.0f} MiB |")
    out.append(f"| Spack BuildCacheDatabase | {float(py[0]):.2f} | {int(py[1]) / 1024:.0f} MiB |")


_STARTUP = """
import sys, time
t0 = time.perf_counter()
import spack_oci_rs as o
t1 = time.perf_counter()
c = o.Client(ca_certs=[sys.argv[2]])
o.parse_reference(sys.argv[1])
t2 = time.perf_counter()
o.list_tags(sys.argv[1], client=c)
t3 = time.perf_counter()
o.list_tags(sys.argv[1], client=c)
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3)
"""


def startup(out: list[str], work: Path) -> None:
    """Engine start-up in fresh processes: import, Client + first parse, the first HTTPS
    request (runtime, system roots + a CA file, TLS handshake) vs a second one."""
    with Registry(work / "tls-reg", tls=True) as reg:
        assert reg.ca_file is not None
        oci.upload_blob(
            reg.repo_url("bench/startup"), b"x", client=oci.Client(ca_certs=[str(reg.ca_file)])
        )
        runs = [
            [float(x) for x in subprocess.run(
                [sys.executable, "-c", _STARTUP, reg.repo_url("bench/startup"), str(reg.ca_file)],
                capture_output=True, text=True, check=True).stdout.split()]
            for _ in range(7)
        ]  # fmt: skip
    med = [sorted(r[i] for r in runs)[3] * 1000 for i in range(4)]
    out.append(
        f"\nengine start-up, median of 7 fresh processes: import {med[0]:.1f} ms, Client + first "
        f"parse {med[1]:.1f} ms (fixed cost {med[0] + med[1]:.1f} ms); first HTTPS request "
        f"(runtime, roots, handshake) {med[2]:.1f} ms vs {med[3]:.1f} ms for the next one"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--startup-only", action="store_true")
    ap.add_argument("--spack", default="/tmp/spack-trees/spack-v1.1.0")
    args = ap.parse_args()
    sizes = [30, 200, 1000] if args.quick else [300, 2000, 10000]
    tree = Path(args.spack)
    out = [f"## Index cost ({time.strftime('%Y-%m-%d')}, 20 ms per request round trip)", ""]
    if args.startup_only:
        with tempfile.TemporaryDirectory() as tmp:
            startup(out, Path(tmp))
        print("\n".join(out[2:]))
        return 0
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "reg") as reg:
        out.append(proxy_rate(reg))
        out.append("")
        with LatencyProxy(("127.0.0.1", reg.port), 0.010) as proxy:
            row1(reg, proxy, tree, sizes, out)
            row2(reg, proxy, tree, sizes[-1], out)
        row3(tree, sizes[-1], Path(tmp), out)
        startup(out, Path(tmp))
    text = "\n".join(out) + "\n"
    report(text, record=not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
