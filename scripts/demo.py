"""The main job, end to end on a throwaway local registry.

Starts the CNCF distribution server on 127.0.0.1, makes a few sample install prefixes (text
files holding their prefix, symlinks, an ELF binary, random data), pushes them as a
Spack-style build cache (one image per prefix, dependencies' layers below, Spack-identical
tarballs streamed into the upload), pushes again (everything skipped), builds and uploads the
index, then fetches every blob back, verifies each digest, and prints a summary.

Run it through ``scripts/demo.sh`` (which builds and installs the wheel first).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import spack_oci_rs as oci

from registry import Registry

#: name -> (dependencies, MB of random data)
PACKAGES = {
    "zlib": ([], 2),
    "openssl": (["zlib"], 6),
    "curl": (["openssl", "zlib"], 4),
    "python": (["openssl", "zlib"], 12),
    "py-numpy": (["python"], 8),
    "git": (["curl", "openssl", "zlib"], 5),
}


def make_prefix(store: Path, name: str, deps: list[str], mb: int) -> Path:
    h = hashlib.sha256(name.encode()).hexdigest()[:32]
    prefix = store / f"{name}-1.0-{h}"
    for d in ("bin", "lib", "share/doc", ".spack"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    tool = prefix / "bin" / name
    tool.write_text(f'#!/bin/sh\nexec {prefix}/lib/{name}.so "$@"\n')
    tool.chmod(0o755)
    shutil.copy("/bin/true", prefix / "lib" / f"{name}.so")
    (prefix / "lib" / "data.bin").write_bytes(os.urandom(mb * 1024 * 1024))
    for i in range(50):
        (prefix / "share" / "doc" / f"page{i}.txt").write_text(f"{name} page {i}\n" * 40)
    (prefix / "lib" / f"lib{name}.so.1").symlink_to(prefix / "lib" / f"{name}.so")
    (prefix / ".spack" / "spec.json").write_text(json.dumps({"name": name, "deps": deps}))
    return prefix


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="spack-oci-rs-demo-"))
    store = work / "store"
    t0 = time.time()
    with Registry(work / "registry") as reg:
        cache = reg.repo_url("demo/buildcache")
        print(f"registry   {reg.base} (CNCF distribution, storage {reg.storage_dir})")
        prefixes = {n: make_prefix(store, n, d, mb) for n, (d, mb) in PACKAGES.items()}

        def layers(name: str) -> list[str]:
            out: list[str] = []
            for d in PACKAGES[name][0]:
                out += [x for x in layers(d) if x not in out]
            return [*out, name]

        items = [
            oci.PushItem(
                oci.default_tag(name, "1.0", p.name.rsplit("-", 1)[1]),
                key=name,
                prefix=p,
                prefixes_to_relocate=[str(p), str(store)],
                buildinfo={"buildpath": str(store), "relative_prefix": p.name},
                layers=layers(name),
                extra_config={
                    "spec": {"name": name, "version": "1.0"},
                    "binary_cache_checksum": None,
                    "archive_size": None,
                    "archive_compression": "gzip",
                },
                annotations={"org.opencontainers.image.description": f"{name}@1.0"},
            )
            for name, p in prefixes.items()
        ]
        raw = sum(f.stat().st_size for p in prefixes.values() for f in p.rglob("*") if f.is_file())

        t = time.time()
        results = oci.push(cache, items)
        push_s = time.time() - t
        failed = [r for r in results if r.status != "pushed"]
        for r in failed:
            print(f"FAILED {r.tag}: {r.error}")
        pushed_bytes = sum(r.size or 0 for r in results)

        t = time.time()
        again = oci.push(cache, items)
        repush_s = time.time() - t
        assert all(r.status == "skipped" for r in again), [r.status for r in again]

        t = time.time()
        gathered = oci.build_index(cache)
        index = {"specs": {tag: cfg["spec"] for tag, _, cfg in gathered.configs}}
        index_digest = oci.upload_index(cache, json.dumps(index, sort_keys=True).encode())
        index_s = time.time() - t

        # Fetch everything back: every layer and config, verified by the engine and here.
        t = time.time()
        out = work / "fetched"
        out.mkdir()
        requests = []
        for r in results:
            manifest, _ = oci.get_manifest_and_config(f"{cache}:{r.tag}")
            for blob in [manifest["config"], *manifest["layers"]]:
                dest = out / blob["digest"].replace(":", "-")
                if all(str(dest) != str(q[2]) for q in requests):
                    requests.append((cache, blob["digest"], dest))
        fetched = oci.fetch_blobs(requests)
        fetch_s = time.time() - t
        bad = [f for f in fetched if not f.ok]
        for f in fetched:
            if f.ok:
                actual = "sha256:" + hashlib.sha256(Path(f.dest).read_bytes()).hexdigest()
                if actual != f.digest:
                    bad.append(f)
        found = oci.fetch_index(cache)
        assert found is not None and json.loads(found[1] or b"{}") == json.loads(
            json.dumps(index, sort_keys=True)
        )

        mb = 1024 * 1024
        print(f"prefixes   {len(items)} ({raw / mb:.1f} MiB on disk) in {store}")
        print(
            f"push       {len(results) - len(failed)} pushed, {len(failed)} failed, "
            f"{pushed_bytes / mb:.1f} MiB compressed in {push_s:.2f}s"
        )
        print(f"re-push    {len(again)} skipped in {repush_s:.2f}s")
        print(
            f"index      {len(gathered.configs)} specs, index.spack {index_digest[:19]}… "
            f"in {index_s:.2f}s"
        )
        print(
            f"fetch      {len(fetched)} blobs, {len(fetched) - len(bad)} verified, "
            f"{len(bad)} bad in {fetch_s:.2f}s"
        )
        print(f"tags       {', '.join(oci.list_tags(cache))}")
        ok = not failed and not bad
        print(f"result     {'OK' if ok else 'FAILED'} in {time.time() - t0:.1f}s")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
