#!/usr/bin/env python3
"""Cost of signing and verifying: push of 100 images and prefetch of 100 images behind
``latency_proxy`` (default 10 ms each way, 20 ms per request round trip), signed
(``push(sign_key=)``, ``prefetch_images(trusted_keys=)``) vs unsigned, in the same run on the
same data, alternating. Prints medians and the ratio signed/unsigned (1.00: no overhead) and
the requests each made. A benchmark: nothing here asserts a time.

With ``--spack TREE``: the same through Spack with the plugin, on a generated environment of
``--images`` specs: ``spack buildcache push --update-index`` into a fresh repository with
``config:oci_sign_key`` (images and index signed) or without, and ``spack install
--cache-only`` from it with ``config:oci_trusted_keys`` (every image and the index verified)
or with ``--no-check-signature``, alternating, median of ``--reps``.

    python bench/sign_bench.py [--reps 3] [--delay-ms 10] [--images 100] [--spack TREE]
"""

from __future__ import annotations

import argparse
import os
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
from spack_env import SpackEnv, many_name  # noqa: E402


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


def spack_push_install(
    env: SpackEnv, env_dir: Path, proxy: LatencyProxy, count: int, keys: tuple[Path, Path] | None
) -> tuple[float, int, float, int]:
    """Push the environment through ``proxy`` into a fresh repository (signed with
    ``keys[0]`` if given) and install it back (verified against ``keys[1]``): the seconds
    and requests of each."""
    mode = "signed" if keys else "unsigned"
    env.mirror_add("bench", f"oci+http://{proxy.host}/{unique_repo_name(mode)}", unsigned=not keys)
    before = proxy.requests
    sign = ["-c", f"config:oci_sign_key:{keys[0]}"] if keys else []
    push = env.run(*sign, "-e", env_dir, "buildcache", "push", "--unsigned", "--update-index",
                   "bench")  # fmt: skip
    pushed = proxy.requests
    env.uninstall_all()
    env.clear_download_caches()
    check = ["-c", f"config:oci_trusted_keys:[{keys[1]}]"] if keys else []
    flags = [] if keys else ["--no-check-signature"]
    inst = env.run(*check, "-e", env_dir, "install", "--cache-only", *flags, input="")
    env.mirror_remove("bench")
    done = inst.stdout.count("from binary cache")
    if done != count:
        raise RuntimeError(f"{done} of {count} specs from the cache:\n{inst.stdout[-3000:]}")
    return push.duration, pushed - before, inst.duration, proxy.requests - pushed


def spack_rows(args: argparse.Namespace, work: Path, key: Path, pub: Path) -> list[str]:
    env = SpackEnv.create(work / "spack", spack_root=Path(args.spack), many=args.images)
    env_dir = env.write_environment(work / "e", [many_name(i) for i in range(args.images)])
    print(f"building {args.images} specs (Spack {env.version()})", flush=True)
    env.run("-e", env_dir, "install", input="")
    env.run("config", "add", "config:oci_backend:rust")
    times: dict[str, list[float]] = {}
    sent: dict[str, int] = {}
    with Registry(work / "spack-registry") as reg:
        host, port = reg.host.rsplit(":", 1)
        with LatencyProxy((host, int(port)), args.delay_ms / 1000) as proxy:
            for rep in range(args.reps):
                for mode in ("unsigned", "signed"):
                    keys = (key, pub) if mode == "signed" else None
                    p, pr, i, ir = spack_push_install(env, env_dir, proxy, args.images, keys)
                    print(f"  {mode} rep {rep}: push {p:.2f} s ({pr} requests), "
                          f"install {i:.2f} s ({ir} requests)", flush=True)  # fmt: skip
                    times.setdefault(f"push {mode}", []).append(p)
                    times.setdefault(f"install {mode}", []).append(i)
                    sent[f"push {mode}"], sent[f"install {mode}"] = pr, ir
    rows = []
    for op in ("push --update-index", "install --cache-only"):
        op1 = op.split()[0]
        u = statistics.median(times[f"{op1} unsigned"])
        s = statistics.median(times[f"{op1} signed"])
        rows.append(
            f"| spack {op}, {args.images} specs | {u:.2f} | {s:.2f} | {s / u:.2f} | "
            f"{sent[f'{op1} unsigned']} -> {sent[f'{op1} signed']} |"
        )
    return rows


def engine_rows(args: argparse.Namespace, work: Path, key: Path, pub: Path, images: int) -> None:
    client = oci.Client()
    times: dict[str, list[float]] = {}
    requests: dict[str, int] = {}
    with Registry(work / "registry") as reg:
        host, port = reg.host.rsplit(":", 1)
        with LatencyProxy((host, int(port)), args.delay_ms / 1000) as proxy:
            for rep in range(args.reps):
                for mode in ("unsigned", "signed"):
                    repo = f"oci+http://{proxy.host}/{unique_repo_name(f'sign-{mode}-{rep}')}"
                    its = items(work, images, "pkg")
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
    print(f"{images} images, {2 * args.delay_ms:.0f} ms per request, {args.reps} reps")
    for op in ("push", "prefetch"):
        u = statistics.median(times[f"{op} unsigned"])
        s = statistics.median(times[f"{op} signed"])
        print(
            f"{op:<9} unsigned {u:6.2f} s ({requests[f'{op} unsigned']} req)  "
            f"signed {s:6.2f} s ({requests[f'{op} signed']} req)  ratio {s / u:.2f}"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--spack", help="a Spack tree: time push and install through Spack")
    args = p.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    work = Path(tempfile.mkdtemp(prefix="spack-oci-rs-sign-bench-"))
    key, pub = openssl_key_pair(work, "bench")
    try:
        if args.spack:
            rows = spack_rows(args, work, key, pub)
            print(f"{args.images} specs, {2 * args.delay_ms:.0f} ms per request, median of "
                  f"{args.reps}, load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
            print(
                "| workload | unsigned (s) | signed (s) | ratio | requests |\n|---|---|---|---|---|"
            )
            print("\n".join(rows))
        else:
            # 1 image: what signing adds in series; --images: what it adds in all.
            for n in sorted({1, args.images}):
                engine_rows(args, work, key, pub, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
