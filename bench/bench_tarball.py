#!/usr/bin/env python3
"""Benchmark build-cache tarball creation (not a test).

Builds synthetic install prefixes and times, for each:

* ``ours``:      ``spack_oci_rs.create_tarball`` (Rust, one thread per call);
* ``spack``:     Spack's ``binary_distribution._do_create_tarball`` (when SPACK_ROOT is set);
* ``tar|gzip``:  ``tar -c | gzip -6`` to a file: the floor (two processes, so up to two cores);

then several prefixes at once from a thread pool (the GIL is released while Rust works).
Prints medians and ratios. The default run takes about a minute or two on 2 cores.

    python bench/bench_tarball.py [--scale 0.6] [--repeat 3] [--threads N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import spack_oci_rs

WORDS = (
    "int void return static const char struct include define if else for while size_t "
    "unsigned long double float namespace template class public private std vector string "
    "auto nullptr lib bin share include pkgconfig cmake config version prefix libdir"
).split()


def text_blob(rng: random.Random, size: int, prefix: str, with_prefix: bool) -> bytes:
    lines = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
        if with_prefix and rng.random() < 0.02:
            line += f" {prefix}/lib"
        lines.append(line)
        n += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def elf_pool() -> list[bytes]:
    """Real ELF files from the system, for realistic compressibility."""
    pool = []
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    head = f.read(4)
                    if head == b"\x7fELF" and os.path.getsize(p) > 20000:
                        f.seek(0)
                        pool.append(f.read())
            if len(pool) >= 200:
                return pool
    return pool or [b"\x7fELF" + bytes(100000)]


def binary_blob(pool: list[bytes], rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        b = rng.choice(pool)
        start = rng.randrange(0, max(1, len(b) - 4096))
        out += b[start : start + min(len(b) - start, size - len(out))]
    return bytes(out[:size])


def make_small_files(prefix: Path, scale: float, rng: random.Random) -> None:
    """Many small files: headers, docs, pkgconfig, cmake files."""
    n = int(8000 * scale)
    for i in range(n):
        d = prefix / "include" / f"mod{i % 97}" / f"sub{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.lognormvariate(7.5, 1.0)) + 16
        (d / f"file{i}.h").write_bytes(text_blob(rng, min(size, 200_000), str(prefix), i % 5 == 0))


def make_large_files(prefix: Path, scale: float, rng: random.Random, pool: list[bytes]) -> None:
    """Few large files: static libraries / data."""
    (prefix / "lib").mkdir(parents=True)
    for i in range(3):
        size = int(32 * 2**20 * scale)
        data = binary_blob(pool, rng, size)
        (prefix / "lib" / f"libbig{i}.a").write_bytes(b"!<arch>\n" + data)


def make_mix(prefix: Path, scale: float, rng: random.Random, pool: list[bytes]) -> None:
    """A typical package: ELF binaries and libraries, symlinks, headers, docs, scripts."""
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "share" / "doc").mkdir(parents=True)
    (prefix / ".spack").mkdir()
    for i in range(int(60 * scale)):
        elf = rng.choice(pool)
        (prefix / "bin" / f"tool{i}").write_bytes(elf)
        (prefix / "bin" / f"tool{i}").chmod(0o755)
    for i in range(int(40 * scale)):
        lib = prefix / "lib" / f"libx{i}.so.1.2"
        lib.write_bytes(rng.choice(pool))
        os.symlink(lib.name, prefix / "lib" / f"libx{i}.so.1")
        os.symlink(str(lib), prefix / "lib" / f"libx{i}.so")
    for i in range(int(2000 * scale)):
        size = int(rng.lognormvariate(8, 1.2)) + 16
        (prefix / "share" / "doc" / f"page{i}.txt").write_bytes(
            text_blob(rng, min(size, 500_000), str(prefix), i % 3 == 0)
        )
    for i in range(int(20 * scale)):
        os.link(prefix / "bin" / "tool0", prefix / "bin" / f"alias{i}")
    (prefix / ".spack" / "spec.json").write_text('{"spec": {}}')


def cpu_now() -> float:
    """CPU seconds of this process (all threads) and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall-clock and CPU seconds of `repeat` runs, and the last result."""
    times = []
    cpus = []
    result = None
    for _ in range(repeat):
        c0 = cpu_now()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(cpu_now() - c0)
    return statistics.median(times), statistics.median(cpus), result


def tar_size(prefix: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(prefix):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=0.6, help="size multiplier (default 0.6)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    bindist = syaml = None
    spack_root = os.environ.get("SPACK_ROOT")
    if spack_root:
        sys.path.insert(0, os.path.join(spack_root, "lib", "spack"))
        import spack.binary_distribution as bindist
        import spack.util.spack_yaml as syaml

    work = Path(tempfile.mkdtemp(prefix="bench-tarball-"))
    rng = random.Random(42)
    pool = elf_pool()
    store = work / "store"
    scenarios: dict[str, Path] = {}
    t0 = time.perf_counter()
    for name, maker in (
        ("many small files", lambda p: make_small_files(p, args.scale, rng)),
        ("few large files", lambda p: make_large_files(p, args.scale, rng, pool)),
        ("mixed package", lambda p: make_mix(p, args.scale, rng, pool)),
    ):
        p = store / f"linux-x86_64/{name.replace(' ', '-')}-1.0-abcdef"
        p.mkdir(parents=True)
        maker(p)
        scenarios[name] = p
    print(f"# prefixes generated in {time.perf_counter() - t0:.1f}s under {work}", flush=True)
    print(
        f"# zlib level 6, {args.repeat} runs each (median), {os.cpu_count()} CPUs, "
        f"Spack: {spack_root or 'not set (SPACK_ROOT)'}",
        flush=True,
    )

    def dump(d: dict[str, Any]) -> bytes:
        if syaml is not None:
            return syaml.dump(d, default_flow_style=True).encode()  # type: ignore[no-any-return]
        import json

        return json.dumps(d).encode()

    rows = []
    for name, prefix in scenarios.items():
        prefixes = [str(prefix), str(store)]
        info_holder: dict[str, Any] = {}

        def ours(prefix: Path = prefix, prefixes: list[str] = prefixes) -> Any:
            return spack_oci_rs.create_tarball(
                str(prefix),
                str(work / "ours.tar.gz"),
                prefixes_to_relocate=prefixes,
                buildinfo={"relative_prefix": str(prefix.relative_to(store))},
                dump=dump,
            )

        t_ours, c_ours, info = timed(ours, args.repeat)
        info_holder["info"] = info

        t_spack = None
        same = ""
        if bindist is not None:

            def spack_run(prefix: Path = prefix, prefixes: list[str] = prefixes) -> Any:
                return bindist._do_create_tarball(
                    str(work / "spack.tar.gz"),
                    str(prefix),
                    {"relative_prefix": str(prefix.relative_to(store))},
                    prefixes,
                )

            t_spack, _c, (gz_hex, _tar_hex) = timed(spack_run, args.repeat)
            same = "yes" if gz_hex == info.checksum else "NO"

        def floor(prefix: Path = prefix) -> None:
            rel = str(prefix).lstrip("/")
            subprocess.run(
                f"tar -cf - -C / '{rel}' | gzip -6 > '{work / 'floor.tar.gz'}'",
                shell=True,
                check=True,
            )

        t_floor, c_floor, _ = timed(floor, args.repeat)
        size = info.uncompressed_size
        rows.append((name, size, info.size, t_ours, c_ours, t_spack, t_floor, c_floor, same))
        print(f"#   done: {name}", flush=True)

    # Several prefixes at once: copies of the mixed package, from a thread pool.
    n_par = max(2, args.threads)
    mix = scenarios["mixed package"]
    copies = []
    for i in range(n_par):
        dst = store / f"linux-x86_64/mixed-copy{i}-1.0-abcdef"
        shutil.copytree(mix, dst, symlinks=True)
        copies.append(dst)

    def one(i: int) -> Any:
        return spack_oci_rs.create_tarball(
            str(copies[i]),
            str(work / f"par{i}.tar.gz"),
            prefixes_to_relocate=[str(copies[i]), str(store)],
            buildinfo={},
            dump=dump,
        )

    t_seq, _, _ = timed(lambda: [one(i) for i in range(n_par)], args.repeat)

    def parallel() -> list[Any]:
        with ThreadPoolExecutor(max_workers=args.threads) as ex:
            return list(ex.map(one, range(n_par)))

    t_par, _, _ = timed(parallel, args.repeat)

    mb = 1 << 20
    print()
    hdr = (
        f"{'scenario':<17} {'tar MB':>7} {'gz MB':>6} {'ours s':>7} {'MB/s':>5} {'cpu s':>6} "
        f"{'spack s':>7} {'spack/ours':>10} {'tar|gzip s':>10} {'cpu s':>6} "
        f"{'floor/ours':>10} {'cpu ratio':>9} {'same':>4}"
    )
    print(hdr)
    print("-" * len(hdr))
    for name, size, gz, t_o, c_o, t_s, t_f, c_f, same in rows:
        spack_s = f"{t_s:7.2f}" if t_s is not None else f"{'-':>7}"
        ratio = f"{t_s / t_o:9.1f}x" if t_s is not None else f"{'-':>10}"
        print(
            f"{name:<17} {size / mb:7.1f} {gz / mb:6.1f} {t_o:7.2f} {size / mb / t_o:5.1f} "
            f"{c_o:6.2f} {spack_s} {ratio} {t_f:10.2f} {c_f:6.2f} {t_f / t_o:9.2f}x "
            f"{c_f / c_o:8.2f}x {same or '-':>4}"
        )
    print(
        "(floor/ours, cpu ratio > 1: ours is faster; tar|gzip runs tar and gzip in two "
        "processes, 'cpu s' adds both)"
    )
    print()
    print(
        f"{n_par} copies of 'mixed package': sequential {t_seq:.2f}s, "
        f"{args.threads} threads {t_par:.2f}s, speed-up {t_seq / t_par:.2f}x"
    )
    if args.keep:
        print(f"# kept {work}")
    else:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
