#!/usr/bin/env python3
"""spack-oci-rs benchmarks: our engine against a baseline measured in the same run.

    python bench/run.py                      # all workloads that can run here
    python bench/run.py -w 1,4,5 --reps 5    # some, more repetitions
    python bench/run.py --quick              # smaller data, one repetition

Every workload runs our engine and its baseline on the same data against the same real
registry (the CNCF distribution server on 127.0.0.1) and prints median, spread, and the ratio
baseline/ours (> 1: we are faster). Workloads 2-4 also run behind ``latency_proxy`` adding
``--delay-ms`` in each direction (default 10 ms, i.e. 20 ms per request round trip). These are
benchmarks, not tests: nothing here asserts a time.

Baselines:
1. push prefixes: with ``SPACK_ROOT``, ``spack buildcache push`` with Spack's Python backend
   vs the same command with ``config:oci_backend:rust`` (whole commands, same installed specs,
   a patched copy of Spack); without Spack, ``tar -c | gzip -6`` of every prefix followed by
   ``skopeo copy`` of an OCI layout holding those layers (the engine-free way to get the same
   images into a registry). The compression floor is printed too: single-thread
   ``tar | gzip -6`` time of all prefixes divided by the cores, or of the largest prefix.
2. 100 small specs (Spack only): fresh push, no-op re-push, update-index, install --cache-only.
3. update-index with 2,000 spec tags (Spack only): python vs rust backend.
4. install-side fetch of 50 blobs: ``fetch_blobs`` vs a sequential urllib loop that streams
   and verifies each blob as Spack's ``OCIRegistryFetchStrategy`` does.
5. raw blob copy vs ``skopeo copy``: upload of an OCI layout's blobs, and download of them.
6. one large prefix (default 2 GiB, ``--large-mib``): throughput and peak RSS of a push.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import spack_oci_rs as oci  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402
from registry import Registry, make_oci_layout  # noqa: E402

CPUS = os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    what: str
    ours: list[float]
    base: list[float]
    base_name: str
    note: str = ""

    @staticmethod
    def fmt(xs: list[float]) -> str:
        if not xs:
            return "-"
        m = statistics.median(xs)
        spread = (max(xs) - min(xs)) / 2 if len(xs) > 1 else 0.0
        return f"{m:7.2f} ±{spread:4.2f}"

    def ratio(self) -> str:
        if not self.ours or not self.base:
            return "-"
        return f"{statistics.median(self.base) / max(statistics.median(self.ours), 1e-9):6.2f}x"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.what:<44} ours {Row.fmt(row.ours)} s   {row.base_name} "
              f"{Row.fmt(row.base)} s   {row.ratio()}", flush=True)  # fmt: skip

    def print(self) -> None:
        print("\n" + "=" * 110)
        print(f"{'workload':<10} {'what':<44} {'ours (s)':>14} {'baseline (s)':>14} "
              f"{'ratio':>8}  baseline")  # fmt: skip
        for r in self.rows:
            print(f"{r.workload:<10} {r.what:<44} {Row.fmt(r.ours):>14} {Row.fmt(r.base):>14} "
                  f"{r.ratio():>8}  {r.base_name}{'  ' + r.note if r.note else ''}")  # fmt: skip
        for n in self.notes:
            print(f"note: {n}")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

WORDS = (
    "int void return static const char struct include define if else for while size_t "
    "unsigned long double namespace template class public private std vector string auto"
).split()


def _elf_sources() -> list[Path]:
    libs = sorted(Path("/usr/lib/x86_64-linux-gnu").glob("*.so*"))
    libs = [p for p in libs if p.is_file() and not p.is_symlink() and p.stat().st_size > 100_000]
    return libs or [Path("/bin/true")]


def make_prefix(root: Path, name: str, mib: float, seed: int) -> Path:
    """A prefix of about ``mib`` MiB: real ELF libraries (~40%), many small text files some of
    which name the prefix (~25%), random data (~35%)."""
    rng = random.Random(seed)
    prefix = root / f"{name}-1.0-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    for d in ("bin", "lib", "include", "share/doc"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    budget = int(mib * 1024 * 1024)
    elf_budget, text_budget = int(budget * 0.4), int(budget * 0.25)
    elfs = _elf_sources()
    used = 0
    while used < elf_budget:
        src = rng.choice(elfs)
        dest = prefix / "lib" / f"lib{name}-{used}.so"
        shutil.copyfile(src, dest)
        used += src.stat().st_size
    used, i = 0, 0
    while used < text_budget:
        lines = []
        for _ in range(rng.randint(20, 200)):
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            if rng.random() < 0.01:
                line += f" {prefix}/lib"
            lines.append(line)
        text = "\n".join(lines) + "\n"
        (prefix / "include" / f"h{i}.h").write_text(text)
        used += len(text)
        i += 1
    (prefix / "share" / "data.bin").write_bytes(rng.randbytes(budget - elf_budget - text_budget))
    tool = prefix / "bin" / name
    tool.write_text(f"#!/bin/sh\nexec {prefix}/lib/lib{name}-0.so\n")
    tool.chmod(0o755)
    (prefix / "lib" / f"lib{name}.so").symlink_to(prefix / "lib" / f"lib{name}-0.so")
    return prefix


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def tar_gzip(prefix: Path, out: Path) -> None:
    with open(out, "wb") as f:
        tar = subprocess.Popen(["tar", "-C", "/", "-cf", "-", str(prefix).lstrip("/")],
                               stdout=subprocess.PIPE)  # fmt: skip
        subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=f, check=True)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError("tar failed")


def gzip_cpu_seconds(prefix: Path, out: Path) -> float:
    """CPU seconds (user+sys of the children) of ``tar | gzip -6``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tar_gzip(prefix, out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# ---------------------------------------------------------------------------------------------
# Spack (optional)
# ---------------------------------------------------------------------------------------------


@contextmanager
def spack_env(work: Path, many: int = 0) -> Iterator[object | None]:
    """A SpackEnv on a patched copy of $SPACK_ROOT, or None without Spack."""
    from spack_env import SpackEnv, skip_reason
    from spack_oci_rs import patch

    reason = skip_reason()
    if reason:
        print(f"  (no Spack: {reason})")
        yield None
        return
    src = Path(os.environ["SPACK_ROOT"])
    dest = work / "spack-patched"
    if not dest.exists():
        shutil.copytree(src, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", "opt"))  # fmt: skip
        if patch.check(dest) == "unpatched":
            patch.apply(dest)
    yield SpackEnv.create(work / f"env-{many}-{time.time_ns()}", spack_root=dest, many=many)


def backend(env: object, name: str) -> None:
    env.run("config", "add", f"config:oci_backend:{name}")  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------


def w1_push(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[1] push install prefixes")
    n = 3 if args.quick else 8
    total = 40 if args.quick else 200
    sizes = [total * w / sum(range(1, n + 1)) for w in range(1, n + 1)]  # few large, many small
    store = work / "w1-store"
    prefixes = [make_prefix(store, f"pkg{i}", s, i) for i, s in enumerate(sizes)]
    raw = sum(du(p) for p in prefixes)
    print(f"  {n} prefixes, {raw / 2**20:.0f} MiB")

    cpu = [gzip_cpu_seconds(p, work / f"floor{i}.tgz") for i, p in enumerate(prefixes)]
    floor = max(sum(cpu) / CPUS, max(cpu))
    gz_bytes = sum((work / f"floor{i}.tgz").stat().st_size for i in range(n))
    report.notes.append(
        f"[1] compression floor: tar|gzip -6 of all prefixes {sum(cpu):.2f} CPU s, "
        f"floor on {CPUS} cores {floor:.2f} s; {raw / 2**20:.0f} MiB -> {gz_bytes / 2**20:.0f} MiB"
    )

    def ours(repo: str, compression: str = "spack") -> None:
        items = [oci.PushItem(p.name + ".spack", prefix=p, prefixes_to_relocate=[str(store)])
                 for p in prefixes]  # fmt: skip
        res = oci.push(reg.repo_url(repo), items, compression=compression)
        sizes[compression] = sum(r.size or 0 for r in res)
        assert all(r.status == "pushed" for r in res), [str(r.error) for r in res]

    sizes: dict[str, int] = {}
    ours_t = [timed(lambda i=i: ours(f"w1/ours{i}")) for i in range(args.reps)]
    fast_t = [timed(lambda i=i: ours(f"w1/fast{i}", "fast")) for i in range(args.reps)]
    report.notes.append(
        f"[1] compressed size: spack mode {sizes['spack'] / 2**20:.1f} MiB, fast mode "
        f"{sizes['fast'] / 2**20:.1f} MiB ({(sizes['fast'] / sizes['spack'] - 1) * 100:+.1f}%)"
    )
    with spack_env(work) as env:
        if env is None:

            def baseline(i: int) -> None:
                layers = []
                for j, p in enumerate(prefixes):
                    tar_gzip(p, work / f"b{i}-{j}.tgz")
                    layers.append(work / f"b{i}-{j}.tgz")
                skopeo_push_layers(reg, layers, f"w1/base{i}", work / f"layout{i}")

            base_t = [timed(lambda i=i: baseline(i)) for i in range(args.reps)]
            report.add(Row("1", f"push {n} prefixes ({raw / 2**20:.0f} MiB)", ours_t, base_t,
                           "tar|gzip-6 + skopeo"))  # fmt: skip
            report.add(Row("1", f"push {n} prefixes, fast compression", fast_t, base_t,
                           "tar|gzip-6 + skopeo"))  # fmt: skip
        else:
            report.add(Row("1", f"push {n} prefixes, engine API", ours_t, [floor] * len(ours_t),
                           "compression floor"))  # fmt: skip
            report.add(Row("1", f"push {n} prefixes, engine API, fast", fast_t,
                           [floor] * len(fast_t), "compression floor"))  # fmt: skip
            spack_push_compare(env, reg, store, prefixes, args, report)
    report.rows[-1].note = f"floor {floor:.2f}s"


def spack_push_compare(env: object, reg: Registry, store: Path, prefixes: list[Path],
                       args: argparse.Namespace, report: Report) -> None:  # fmt: skip
    from spack_env import write_package

    names = []
    for i, p in enumerate(prefixes):
        name = f"oci-big-{i}"
        body = f'''class OciBig{i}(Package):
    """Benchmark package copying a prepared tree."""

    homepage = "https://example.com"
    has_code = False
    version("1.0")

    def install(self, spec, prefix):
        install_tree({str(p)!r}, prefix)
        for f in find(prefix.include, "*.h"):
            filter_file({str(p)!r}, prefix, f)
'''
        write_package(env.repo_dir, name, body)  # type: ignore[attr-defined]
        names.append(name)
    env.install(*names)  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {"python": [], "rust": [], "fast": []}
    for i in range(args.reps):
        for b in ("python", "rust", "fast"):
            backend(env, "python" if b == "python" else "rust")
            comp = "fast" if b == "fast" else "spack"
            env.run("config", "add", f"config:oci_compression:{comp}")  # type: ignore[attr-defined]
            env.mirror_add(f"m{b}{i}", reg.repo_url(f"w1/spack-{b}-{i}"))  # type: ignore[attr-defined]
            run = env.push(f"m{b}{i}", *names)  # type: ignore[attr-defined]
            times[b].append(run.duration)
    env.run("config", "add", "config:oci_compression:spack")  # type: ignore[attr-defined]
    report.add(Row("1", f"spack buildcache push {len(names)} specs", times["rust"],
                   times["python"], "spack (python backend)"))  # fmt: skip
    report.add(Row("1", f"spack buildcache push {len(names)} specs, fast", times["fast"],
                   times["python"], "spack (python backend)"))  # fmt: skip


def skopeo_push_layers(reg: Registry, layers: list[Path], repo: str, layout_dir: Path) -> None:
    """Put gzip layers into an OCI layout (one image) and ``skopeo copy`` it to the registry."""
    blobs = layout_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descs = []
    for layer in layers:
        data = layer.read_bytes()
        d = sha(data)
        (blobs / d[7:]).write_bytes(data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                      "size": len(data)})  # fmt: skip
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in descs]}},
                        separators=(",", ":")).encode()  # fmt: skip
    (blobs / sha(config)[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(config), "size": len(config)},
                           "layers": descs}, separators=(",", ":")).encode()  # fmt: skip
    (blobs / sha(manifest)[7:]).write_bytes(manifest)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": "x"}}]}  # fmt: skip
    (layout_dir / "index.json").write_text(json.dumps(index))
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    reg.skopeo("copy", "--quiet", f"oci:{layout_dir}:x", reg.docker_ref(repo, "x"))


def _mirror_url(reg: Registry, proxy: LatencyProxy | None, repo: str) -> str:
    host = proxy.host if proxy else reg.host
    return f"oci+http://{host}/{repo}"


def w2_env(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[2] environment of 100 small specs (Spack)")
    count = 20 if args.quick else 100
    with spack_env(work, many=count) as env:
        if env is None:
            return
        from spack_env import many_name

        specs = [many_name(i) for i in range(count)]
        env_dir = env.write_environment(work / "w2-env", specs)  # type: ignore[attr-defined]
        env.run("-e", env_dir, "install")  # type: ignore[attr-defined]
        startup = statistics.median(env.run("--version").duration for _ in range(3))  # type: ignore[attr-defined]
        report.notes.append(f"[2] spack startup (spack --version): {startup:.2f} s")
        for delay in (0.0, args.delay_ms / 1000):
            proxy = LatencyProxy(("127.0.0.1", reg.port), delay).start() if delay else None
            label = f"{int(delay * 2000)}ms/req" if delay else "0ms"
            res: dict[str, dict[str, list[float]]] = {}
            for b in ("python", "rust"):
                backend(env, b)
                steps: dict[str, list[float]] = {"push": [], "re-push": [], "update-index": [],
                                                 "install": []}  # fmt: skip
                for i in range(args.reps):
                    m = f"w2{b}{label}{i}".replace("/", "")
                    env.mirror_add(m, _mirror_url(reg, proxy, f"w2/{b}-{label}-{i}"))  # type: ignore[attr-defined]
                    e = ("-e", env_dir)
                    steps["push"].append(
                        env.run(*e, "buildcache", "push", "--unsigned", m).duration
                    )  # type: ignore[attr-defined]
                    steps["re-push"].append(
                        env.run(*e, "buildcache", "push", "--unsigned", m).duration
                    )  # type: ignore[attr-defined]
                    steps["update-index"].append(env.run("buildcache", "update-index", m).duration)  # type: ignore[attr-defined]
                    env.uninstall_all()  # type: ignore[attr-defined]
                    env.clear_download_caches()  # type: ignore[attr-defined]
                    run = env.run(*e, "install", "--cache-only", "--no-check-signature")  # type: ignore[attr-defined]
                    assert run.stdout.count("from binary cache") == count, run.stdout[-2000:]
                    steps["install"].append(run.duration)
                    env.run("mirror", "remove", m)  # type: ignore[attr-defined]
                res[b] = steps
            for step in ("push", "re-push", "update-index", "install"):
                report.add(Row("2", f"{count} specs {step} @{label}", res["rust"][step],
                               res["python"][step], "spack (python backend)"))  # fmt: skip
            if proxy:
                proxy.stop()


def w3_index(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[3] update-index with 2,000 spec tags (Spack)")
    ntags = 200 if args.quick else 2000
    with spack_env(work, many=20) as env:
        if env is None:
            return
        from spack_env import many_name

        specs = [many_name(i) for i in range(20)]
        env.install(*specs)  # type: ignore[attr-defined]
        repo = "w3/index"
        env.mirror_add("seed", reg.repo_url(repo))  # type: ignore[attr-defined]
        backend(env, "rust")
        env.push("seed", *specs)  # type: ignore[attr-defined]
        tags = [t for t in oci.list_tags(reg.repo_url(repo)) if t.endswith(".spack")]
        manifests = {t: reg.get_manifest(repo.replace("/", "/"), t).body for t in tags}
        # More tags for the same images: same manifests under new *.spack tags.
        made = len(tags)
        i = 0
        while made < ntags:
            t = tags[i % len(tags)]
            body = manifests[t]
            oci.upload_manifest(f"{reg.repo_url(repo)}:copy{i}-{t}"[:200], body,
                                media_type="application/vnd.oci.image.manifest.v1+json")  # fmt: skip
            made += 1
            i += 1
        for delay in (0.0, args.delay_ms / 1000):
            proxy = LatencyProxy(("127.0.0.1", reg.port), delay).start() if delay else None
            label = f"{int(delay * 2000)}ms/req" if delay else "0ms"
            env.run("mirror", "remove", "seed", check=False)  # type: ignore[attr-defined]
            env.mirror_add("idx", _mirror_url(reg, proxy, repo))  # type: ignore[attr-defined]
            t: dict[str, list[float]] = {}
            for b in ("python", "rust"):
                backend(env, b)
                reps = 1 if (b == "python" and delay) else args.reps
                t[b] = [env.update_index("idx").duration for _ in range(reps)]  # type: ignore[attr-defined]
            env.run("mirror", "remove", "idx")  # type: ignore[attr-defined]
            report.add(Row("3", f"update-index {ntags} tags @{label}", t["rust"], t["python"],
                           "spack (python backend)"))  # fmt: skip
            if proxy:
                proxy.stop()


def _blobs(reg: Registry, repo: str, n: int, size: int) -> list[str]:
    digests = []
    rng = random.Random(7)
    for _ in range(n):
        data = rng.randbytes(size)
        digests.append(oci.upload_blob(reg.repo_url(repo), data)[0])
    return digests


def sequential_fetch(url_base: str, digests: list[str], out: Path) -> None:
    """What Spack's Python backend does per blob: GET, stream to a file, sha256 check."""
    for d in digests:
        h = hashlib.sha256()
        dest = out / d[7:]
        with urllib.request.urlopen(f"{url_base}/blobs/{d}") as r, open(dest, "wb") as f:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        assert "sha256:" + h.hexdigest() == d


def w4_fetch(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[4] install-side fetch of 50 blobs")
    n, size = (20, 256 * 1024) if args.quick else (50, 2 * 1024 * 1024)
    repo = "w4/blobs"
    digests = _blobs(reg, repo, n, size)
    for delay in (0.0, args.delay_ms / 1000):
        proxy = LatencyProxy(("127.0.0.1", reg.port), delay).start() if delay else None
        host = proxy.host if proxy else reg.host
        label = f"{int(delay * 2000)}ms/req" if delay else "0ms"
        ours, base = [], []
        for i in range(args.reps):
            o = work / f"w4-ours-{label}-{i}".replace("/", "")
            o.mkdir()
            client = oci.Client()
            ours.append(timed(lambda: oci.fetch_blobs(
                [(f"oci+http://{host}/{repo}", d, o / d[7:]) for d in digests], client=client)))  # fmt: skip
            b = work / f"w4-base-{label}-{i}".replace("/", "")
            b.mkdir()
            base.append(timed(lambda: sequential_fetch(f"http://{host}/v2/{repo}", digests, b)))
        report.add(Row("4", f"fetch {n} x {size // 1024} KiB @{label}", ours, base,
                       "sequential urllib (Spack's way)"))  # fmt: skip
        if proxy:
            proxy.stop()


def w5_copy(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[5] raw blob copy vs skopeo copy")
    n, mib = (4, 8) if args.quick else (8, 32)

    def layout_for(name: str, seed: int) -> tuple[object, Path]:
        # Fresh content for every run and tool: skopeo's blob-info cache would otherwise
        # mount blobs it has seen, and the registry would find ours already present.
        rng = random.Random(seed)
        layers = [{f"data/{i}.bin": rng.randbytes(mib * 1024 * 1024 // 2)
                   + bytes(mib * 1024 * 512)} for i in range(n)]  # fmt: skip
        lay = make_oci_layout(work / name, layers=layers)
        return lay, lay.path / "blobs" / "sha256"

    up_ours, up_base, down_ours, down_base = [], [], [], []
    for i in range(args.reps):
        repo_o, repo_b = f"w5/ours{i}", f"w5/skopeo{i}"
        lo, blobs_o = layout_for(f"w5-ours-{i}", 100 + i)
        lb, _ = layout_for(f"w5-skopeo-{i}", 200 + i)

        def upload(repo: str = repo_o, layout: object = lo, blobs: Path = blobs_o) -> None:
            from concurrent.futures import ThreadPoolExecutor

            ref = reg.repo_url(repo)
            client = oci.Client()
            digests = [*layout.layer_digests, layout.config_digest]  # type: ignore[attr-defined]
            with ThreadPoolExecutor(8) as pool:  # the GIL is released while Rust uploads
                list(pool.map(lambda d: oci.upload_blob(ref, blobs / d[7:], d, client=client),
                              digests))  # fmt: skip
            manifest = (blobs / layout.manifest_digest[7:]).read_bytes()  # type: ignore[attr-defined]
            oci.upload_manifest(f"{ref}:x", manifest, client=client)

        up_ours.append(timed(upload))
        up_base.append(timed(lambda r=repo_b, lay=lb: reg.skopeo(
            "copy", "--quiet", lay.skopeo_ref, reg.docker_ref(r, "x"))))  # type: ignore[attr-defined]  # fmt: skip
        out_o = work / f"w5-down-ours{i}"
        out_o.mkdir()

        def download(repo: str = repo_o, out: Path = out_o) -> None:
            m, _ = oci.get_manifest_and_config(f"{reg.repo_url(repo)}:x")
            res = oci.fetch_blobs([(reg.repo_url(repo), x["digest"], out / x["digest"][7:])
                                   for x in [m["config"], *m["layers"]]])  # fmt: skip
            assert all(r.ok for r in res)

        down_ours.append(timed(download))
        down_base.append(timed(lambda i=i, r=repo_b: reg.skopeo(
            "copy", "--quiet", reg.docker_ref(r, "x"), f"oci:{work / f'w5-down-skopeo{i}'}:x")))  # fmt: skip
    total = n * mib
    report.add(Row("5", f"upload {n} blobs ({total} MiB)", up_ours, up_base, "skopeo copy"))
    report.add(Row("5", f"download {n} blobs ({total} MiB)", down_ours, down_base, "skopeo copy"))


def w6_large(args: argparse.Namespace, reg: Registry, work: Path, report: Report) -> None:
    print("\n[6] one large prefix: throughput and peak RSS")
    mib = 200 if args.quick else args.large_mib
    prefix = work / "w6" / "large-1.0-aaaa"
    (prefix / "share").mkdir(parents=True)
    rng = random.Random(6)
    chunk = 64 * 1024 * 1024
    written = 0
    i = 0
    while written < mib * 1024 * 1024:
        n = min(chunk, mib * 1024 * 1024 - written)
        # Half random, half text-like: compresses about like real software.
        data = (
            rng.randbytes(n // 2) + (b"lorem ipsum dolor sit amet " * (n // 54 + 1))[: n - n // 2]
        )
        (prefix / "share" / f"part{i}.bin").write_bytes(data)
        written += n
        i += 1
    code = (
        "import resource, sys, time, spack_oci_rs as o\n"
        "t = time.perf_counter()\n"
        f"r = o.push({reg.repo_url('w6/large')!r}, [o.PushItem('large.spack', prefix={str(prefix)!r})])\n"
        "dt = time.perf_counter() - t\n"
        "assert r[0].status == 'pushed', r[0].error\n"
        "rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"
        "print(dt, rss, r[0].size)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, rss, size = out.stdout.split()
    base_rss_out = subprocess.run(
        [sys.executable, "-c", "import spack_oci_rs;"
         "print(int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))"
         ".split()[1]) / 1024)"],
        capture_output=True, text=True, check=True)  # fmt: skip
    floor = gzip_cpu_seconds(prefix, work / "w6.tgz")
    report.add(Row("6", f"push one {mib} MiB prefix", [float(dt)], [floor], "tar|gzip -6 (1 core)",
                   note=f"{mib / float(dt):.0f} MiB/s, peak RSS {float(rss):.0f} MB "
                   f"(interpreter + module alone {float(base_rss_out.stdout):.0f} MB), "
                   f"{int(size) / 2**20:.0f} MiB compressed"))  # fmt: skip


WORKLOADS: dict[str, Callable[[argparse.Namespace, Registry, Path, Report], None]] = {
    "1": w1_push, "2": w2_env, "3": w3_index, "4": w4_fetch, "5": w5_copy, "6": w6_large,
}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-w", "--workloads", default="1,2,3,4,5,6")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (ms)")
    p.add_argument("--large-mib", type=int, default=2048)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if args.quick:
        args.reps = 1
    work = Path(tempfile.mkdtemp(prefix="spack-oci-rs-bench-"))
    report = Report()
    print(f"spack-oci-rs {oci.__version__}, {CPUS} CPUs, work dir {work}")
    try:
        with Registry(work / "registry") as reg:
            for w in args.workloads.split(","):
                WORKLOADS[w.strip()](args, reg, work, report)
    finally:
        report.print()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
