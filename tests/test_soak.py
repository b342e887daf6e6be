"""A randomized soak: push and fetch many blobs, manifests and tags through the fault proxy
injecting random faults (429, 5xx, drops, resets, truncations, stalls, wrong bytes, HTML
pages, redirects, lost replies, slow answers). Bounded in time, seeded, loopback only.

Afterwards every downloaded file is checked against what was uploaded, and the download
directories against leftovers. Corrupt files and partial files must be 0; operations that
fail after their retries are counted (and must stay rare). The figures are printed (always,
also without ``-s``) and recorded as the test's ``soak`` property.

``SPACK_OCI_RS_SOAK_SECONDS`` (default 20: the least it runs; it goes on until more than 60 faults
were injected, up to six times that) and ``SPACK_OCI_RS_SOAK_SEED`` change the run.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs as oci
from faultproxy import Fault, FaultProxy
from registry import Registry

SECONDS = float(os.environ.get("SPACK_OCI_RS_SOAK_SECONDS", "20"))
SEED = int(os.environ.get("SPACK_OCI_RS_SOAK_SEED", "20261127"))

BLOB = r"/blobs/sha256:"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_random_faults(proxy: FaultProxy, rng: random.Random) -> None:
    """Rules that fire at random, forever. Any request may get a 429, a 5xx, an HTML page,
    a drop, a redirect or a delay; blob downloads also resets, truncations, stalls and
    wrong bytes; uploads a lost reply."""
    p = proxy.add
    p(Fault.too_many("0"), times=None, probability=0.03)
    p(Fault.too_many("1"), times=None, probability=0.002)
    for code in (500, 502, 503):
        p(Fault.respond(code), times=None, probability=0.02)
    p(Fault.html(502), times=None, probability=0.01)
    p(Fault.drop(), times=None, probability=0.015)
    p(Fault.redirect(307, other_path=True), "GET", times=None, probability=0.02)
    p(Fault.delay(0.2), times=None, probability=0.01)
    p(Fault.respond(502, forward=True), "PUT", r"/blobs/uploads/", times=None, probability=0.03)
    for _ in range(3):
        p(Fault.reset(after=rng.randrange(0, 400_000)), "GET", BLOB, times=None, probability=0.02)
        p(Fault.truncate(after=rng.randrange(1, 400_000)), "GET", BLOB, times=None,
          probability=0.02)  # fmt: skip
    p(Fault.stall(3, after=rng.randrange(0, 100_000)), "GET", BLOB, times=None, probability=0.01)
    p(Fault.corrupt(), "GET", BLOB, times=None, probability=0.03)


def retried_requests(proxy: FaultProxy) -> int:
    """Requests that repeat (same method and path, query aside) one that got a fault: the
    engine's retries as the registry sees them (a lower bound: an upload that starts over
    from the POST after a failed PUT counts once, as the repeated POST or PUT)."""
    pending: set[tuple[str, str]] = set()
    retried = 0
    for rec in list(proxy.log):
        key = (rec.method, rec.path.split("?")[0])
        if key in pending:
            retried += 1
            pending.discard(key)
        if rec.fault not in (None, "redirect", "delay"):
            pending.add(key)
    return retried


def tarball(rng: random.Random, name: str) -> tuple[bytes, str]:
    """A small random .tar.gz and its uncompressed digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = rng.randbytes(rng.choice([100, 10_000, 300_000]))
        info = tarfile.TarInfo(f"opt/{name}/data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), sha(raw.getvalue())


def test_soak(
    registry: Registry,
    new_repo: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
) -> None:
    rng = random.Random(SEED)
    repo = new_repo("soak")
    ops: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    figures = collections.Counter[str]()
    uploaded: dict[str, bytes] = {}
    pushed: dict[str, dict[str, Any]] = {}  # tag -> manifest (from the registry itself)
    corrupt: list[str] = []
    client = oci.Client(
        retries=6, retry_backoff=0.01, read_timeout=1.0, connect_timeout=2.0, retry_budget=30
    )
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    work.mkdir()

    def fail(op: str, e: BaseException) -> None:
        failures[f"{op}: {type(e).__name__}"] += 1

    with FaultProxy(registry.host, seed=SEED) as proxy:
        add_random_faults(proxy, rng)
        ref = proxy.repo_url(repo)
        start = time.monotonic()
        n = 0
        # At least SECONDS, and on until enough faults were injected to mean something (the
        # engine slows the whole registry on 429/503, so a loaded machine gets fewer
        # operations in): never more than 6 x SECONDS.
        while (elapsed := time.monotonic() - start) < 6 * SECONDS and (
            elapsed < SECONDS or sum(proxy.faults.values()) <= 60
        ):
            n += 1
            op = rng.choice(["upload", "upload", "fetch", "fetch", "push", "manifest", "tags"])
            ops[op] += 1
            try:
                if op == "upload":
                    data = rng.randbytes(rng.choice([10, 5_000, 200_000, 1_200_000]))
                    digest, _ = oci.upload_blob(ref, data, client=client)
                    assert digest == sha(data)
                    uploaded[digest] = data
                elif op == "fetch" and uploaded:
                    picks = rng.sample(sorted(uploaded), min(len(uploaded), rng.randint(1, 6)))
                    reqs = [(ref, d, out / f"{n}-{d[7:19]}") for d in picks]
                    for r in oci.fetch_blobs(reqs, concurrency=4, client=client):
                        dest = Path(r.dest)
                        figures["download retries"] += r.retries
                        figures["downloads resumed"] += r.resumed
                        figures["downloads restarted"] += r.restarted
                        if r.ok:
                            figures["downloads ok"] += 1
                            if dest.read_bytes() != uploaded[r.digest]:
                                corrupt.append(str(dest))
                            dest.unlink()
                        else:
                            assert r.error is not None
                            fail("fetch", r.error)
                            if dest.exists():
                                corrupt.append(f"{dest} (a failed download left a file)")
                elif op == "push":
                    name = f"p{n}"
                    gz, _ = tarball(rng, name)
                    (work / f"{name}.tar.gz").write_bytes(gz)
                    item = oci.PushItem(
                        f"{name}.spack", key=name, tarball=work / f"{name}.tar.gz",
                        extra_config={"spec": {"name": name}},
                    )  # fmt: skip
                    [res] = oci.push(ref, [item], client=client)
                    if res.status == "pushed":
                        raw = registry.get_manifest(repo, f"{name}.spack").body
                        manifest = json.loads(raw)
                        if sha(raw) != res.manifest_digest or manifest["layers"][-1][
                            "digest"
                        ] != sha(gz):
                            corrupt.append(f"manifest of {name}.spack")
                        pushed[f"{name}.spack"] = manifest
                        uploaded[sha(gz)] = gz
                    else:
                        assert res.error is not None
                        fail("push", res.error)
                        if f"{name}.spack" in registry.list_tags(repo):
                            corrupt.append(f"{name}.spack tagged although its push failed")
                elif op == "manifest" and pushed:
                    tag = rng.choice(sorted(pushed))
                    m, cfg = oci.get_manifest_and_config(f"{ref}:{tag}", client=client)
                    if m != pushed[tag] or cfg.get("spec") != {"name": tag[:-6]}:
                        corrupt.append(f"manifest or config of {tag}")
                elif op == "tags":
                    tags = oci.list_tags(ref, client=client)
                    if not set(pushed) <= set(tags):
                        corrupt.append("tag list")
            except oci.OciError as e:
                fail(op, e)
        elapsed = time.monotonic() - start
        leftovers = [
            str(p)
            for p in out.rglob("*")
            if p.name.endswith(".part") or p.name.startswith(".spack-oci-layer-")
        ]
        faults = dict(proxy.faults)
        requests = proxy.requests
        retried = retried_requests(proxy)

    summary = {
        "seed": SEED,
        "seconds": round(elapsed, 1),
        "operations": sum(ops.values()),
        "by_operation": dict(ops),
        "requests": requests,
        "faults_injected": sum(faults.values()),
        "faults_by_kind": faults,
        "retried_requests": retried,
        "download_retries": figures["download retries"],
        "downloads_ok": figures["downloads ok"],
        "downloads_resumed": figures["downloads resumed"],
        "downloads_restarted": figures["downloads restarted"],
        "failures": sum(failures.values()),
        "failures_by_kind": dict(failures),
        "corrupt_files": len(corrupt),
        "partial_files": len(leftovers),
    }
    record_property("soak", json.dumps(summary))
    with capsys.disabled():
        print("\nsoak summary:", json.dumps(summary, indent=2, sort_keys=True))
    assert corrupt == [], corrupt
    assert leftovers == [], leftovers
    assert summary["faults_injected"] > 50, "the soak injected too few faults to mean much"
    # Retries absorb nearly everything; an operation fails only when 6 attempts in a row
    # meet a fault.
    assert summary["failures"] <= max(2, summary["operations"] // 50), summary
