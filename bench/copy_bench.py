"""``copy`` of a build cache between two registries vs skopeo, one tag at a time (what Spack
CI maintainers do today), same data, same process tree, fresh destination repositories.

A cache of N spec-like images (a 1 MiB random layer and a small config each) in one local
registry, copied to another (plain HTTP both, so blobs are streamed, not mounted):

- ``spack-oci-rs copy`` (the engine's ``copy``, all tags in one call) vs a loop of
  ``skopeo copy docker://SRC:tag docker://DST:tag``;
- the second run onto the same destination (nothing to upload) vs the same skopeo loop.

``python bench/copy_bench.py [--tags N] [--reps R]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import spack_oci_rs as oci  # noqa: E402
from registry import Registry, skopeo  # noqa: E402


def make_cache(reg: Registry, repo: str, n: int) -> list[str]:
    ref = reg.repo_url(repo)
    tags = []
    for i in range(n):
        layer, _ = oci.upload_blob(ref, os.urandom(1 << 20))
        config = f'{{"spec":{{"i":{i}}},"rootfs":{{"type":"layers"}}}}'.encode()
        cfg, _ = oci.upload_blob(ref, config)
        tag = f"pkg{i}-1.0-{i:032x}.spack"
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": cfg,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer,
                    "size": 1 << 20,
                }
            ],
        }
        oci.upload_manifest(f"{ref}:{tag}", manifest)
        tags.append(tag)
    return tags


def skopeo_loop(src: Registry, dst: Registry, repo: str, to: str, tags: list[str]) -> None:
    for tag in tags:
        skopeo(
            "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
            src.docker_ref(repo, tag), dst.docker_ref(to, tag),
        )  # fmt: skip


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "a") as a:
        with Registry(Path(tmp) / "b") as b:
            tags = make_cache(a, "cache", args.tags)
            rows: dict[str, list[float]] = {k: [] for k in ("ours", "skopeo", "ours2", "skopeo2")}
            for rep in range(args.reps):
                ours, theirs = f"ours{rep}", f"skopeo{rep}"
                run = lambda: oci.copy(a.repo_url("cache"), b.repo_url(ours))  # noqa: E731
                rows["ours"].append(timed(run))
                rows["ours2"].append(timed(run))
                loop = lambda: skopeo_loop(a, b, "cache", theirs, tags)  # noqa: E731
                rows["skopeo"].append(timed(loop))
                rows["skopeo2"].append(timed(loop))

    def cell(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.2f} ±{statistics.stdev(xs) if len(xs) > 1 else 0:.2f}"

    n = args.tags
    print("| workload | ours (s) | skopeo per tag (s) | ratio |")
    print("|---|---|---|---|")
    for label, o, s in (
        (f"copy {n} tags x 1 MiB, registry to registry", "ours", "skopeo"),
        (f"second copy of the same {n} tags (nothing to upload)", "ours2", "skopeo2"),
    ):
        ratio = statistics.mean(rows[s]) / statistics.mean(rows[o])
        print(f"| {label} | {cell(rows[o])} | {cell(rows[s])} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
