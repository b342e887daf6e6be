#!/usr/bin/env python3
"""Cost of signing and verifying: push of 100 images and prefetch of 100 images behind
``latency_proxy`` (default 10 ms each way, 20 ms per request round trip), signed
(``push(sign_key=)``, ``prefetch_images(trusted_keys=)``) vs unsigned, in the same run on the
same data, alternating. Prints medians and the ratio signed/unsigned (1.00: no overhead) and
the requests each made. A benchmark: nothing here asserts a time.

    python bench/sign_bench.py [--reps 3] [--delay-ms 10] [--images 100]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from test_signing import openssl_key_pair  # noqa: E402

import spack_oci_rs as oci  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from registry import Registry, unique_repo_name  # noqa: E402


def items(work: Path, n: int, tag_prefix: str) -> list[oci.PushItem]:
    out = []
    for i in range(n):
        prefix = work / f"p{i}"
        if not prefix.exists():
            (prefix / "bin").mkdir(parents=True)
            (prefix / "bin" / "tool").write_text(f"tool {i}\n" * 50)
        tag = f"{tag_prefix}{i}-1.0-{i:032x}.spack"
        extra = {"spec": {"_meta": {"version": 5}, "nodes": [{"name": f"pkg{i}"}]}}
        out.append(oci.PushItem(tag, prefix=str(prefix), extra_config=extra))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spack-oci-rs-sign-bench-"))
    key, pub = openssl_key_pair(work, "bench")
    times: dict[str, list[float]] = {}
    requests: dict[str, int] = {}
    try:
        with Registry(work / "registry") as reg:
            host, port = reg.host.rsplit(":", 1)
            with LatencyProxy((host, int(port)), args.delay_ms / 1000) as proxy:
                client = oci.Client()
                for rep in range(args.reps):
                    for mode in ("unsigned", "signed"):
                        repo = f"oci+http://{proxy.host}/{unique_repo_name(f'sign-{mode}-{rep}')}"
                        its = items(work, args.images, "pkg")
                        before = proxy.requests
                        t = time.perf_counter()
                        res = oci.push(
                            repo, its, sign_key=key if mode == "signed" else None, client=client
                        )
                        times.setdefault(f"push {mode}", []).append(time.perf_counter() - t)
                        requests[f"push {mode}"] = proxy.requests - before
                        assert all(r.status == "pushed" for r in res), res[0].error
                        refs = [f"{repo}:{it.tag}" for it in its]
                        cache = work / f"cache-{mode}-{rep}"
                        before = proxy.requests
                        t = time.perf_counter()
                        got = oci.prefetch_images(
                            refs,
                            cache,
                            concurrency=16,
                            client=client,
                            trusted_keys=[pub] if mode == "signed" else None,
                        )
                        times.setdefault(f"prefetch {mode}", []).append(time.perf_counter() - t)
                        requests[f"prefetch {mode}"] = proxy.requests - before
                        assert all(g.ok for g in got), got[0].error
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.images} images, {2 * args.delay_ms:.0f} ms per request, {args.reps} reps")
    for op in ("push", "prefetch"):
        u = statistics.median(times[f"{op} unsigned"])
        s = statistics.median(times[f"{op} signed"])
        print(
            f"{op:<9} unsigned {u:6.2f} s ({requests[f'{op} unsigned']} req)  "
            f"signed {s:6.2f} s ({requests[f'{op} signed']} req)  ratio {s / u:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
