"""``spack-oci-rs copy SRC DST``: promote or mirror a build cache (the engine's :func:`copy`).

Which tags: every tag of SRC (the index included), ``--tags GLOB`` (repeatable, shell
patterns), or ``--spack-env DIR``: the ``<name>-<version>-<hash>.spack`` tags of the concrete
specs in the environment's ``spack.lock`` (externals left out), as Spack's
``_oci_default_tag`` names them. The index: copied with a whole-cache copy; with
``--update-index`` (or a subset) rebuilt on DST instead, the Spack on PATH giving its
archspec targets.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
from pathlib import Path
from typing import Any

import spack_oci_rs as oci

from . import cliutil, spack_mirrors
from .progress import Reporter, human_bytes

INDEX_TAG = "index.spack"
_TARGETS = "import spack_oci_rs.spack_index as s; print(s.targets_json())"


def env_tags(path: str) -> list[str]:
    """The build-cache tags of the concrete specs of a Spack environment (dir or lock file)."""
    lock = Path(path)
    if lock.is_dir():
        lock = lock / "spack.lock"
    try:
        data = json.loads(lock.read_text())
    except OSError as e:
        raise cliutil.UsageError(f"--spack-env {path}: cannot read {lock}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise cliutil.UsageError(f"--spack-env {path}: {lock} is not JSON: {e}") from None
    specs = data.get("concrete_specs") if isinstance(data, dict) else None
    if not isinstance(specs, dict):
        raise cliutil.UsageError(f"--spack-env {path}: {lock} has no concrete specs")
    tags = []
    for dag_hash, node in specs.items():
        if not isinstance(node, dict) or node.get("external"):
            continue
        version = node.get("version")
        if not isinstance(version, str):
            raise cliutil.UsageError(f"--spack-env {path}: spec {dag_hash} has no version")
        tags.append(
            oci.default_tag(str(node.get("name")), version, str(node.get("hash", dag_hash)))
        )
    return sorted(tags)


def _select(args: argparse.Namespace, src: str, client: oci.Client) -> list[str] | None:
    """The tags to copy (None: every tag)."""
    if args.spack_env:
        return env_tags(args.spack_env)
    if not args.tags:
        return None
    listed = oci.list_tags(src, missing_ok=False, client=client)
    chosen = [t for t in listed if any(fnmatch.fnmatchcase(t, g) for g in args.tags)]
    if not chosen:
        raise cliutil.Failure(f"no tag of {src} matches {' '.join(args.tags)}")
    return chosen


def _rebuild_index(dst: str, client: oci.Client) -> oci.IndexUpdate:
    spack = spack_mirrors.find_spack()
    if spack is None:
        raise cliutil.Failure("--update-index needs the `spack` on PATH (its archspec targets)")
    proc = subprocess.run(
        [spack, "python", "-c", _TARGETS],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise cliutil.Failure(f"--update-index: {spack} gave no archspec targets: {why}")
    return oci.update_index(dst, targets=proc.stdout.strip().splitlines()[-1], client=client)


def _line(r: oci.CopyResult) -> str:
    if r.status == "failed":
        return f"FAILED    {r.tag}: {r.error}"
    if r.status == "unchanged":
        return f"unchanged {r.tag}"
    moved = f"{r.blobs_copied} copied ({human_bytes(r.bytes_copied)}), {r.blobs_mounted} mounted"
    return f"copied    {r.tag}: {moved}, {r.blobs_present} present"


def _as_dict(r: oci.CopyResult) -> dict[str, Any]:
    return {
        "tag": r.tag,
        "status": r.status,
        "manifest_digest": r.manifest_digest,
        "blobs_copied": r.blobs_copied,
        "blobs_mounted": r.blobs_mounted,
        "blobs_present": r.blobs_present,
        "bytes_copied": r.bytes_copied,
        "error": str(r.error) if r.error else None,
    }


def summary(results: list[oci.CopyResult]) -> dict[str, int]:
    count = {s: sum(r.status == s for r in results) for s in ("copied", "unchanged", "failed")}
    count["bytes_copied"] = sum(r.bytes_copied for r in results)
    count["blobs_uploaded"] = sum(r.blobs_copied + r.blobs_mounted for r in results)
    return count


def cmd_copy(args: argparse.Namespace, client_for: Any) -> int:
    if args.spack_env and args.tags:
        raise cliutil.UsageError("--tags and --spack-env cannot be combined")
    src, src_mirror = cliutil.resolve(args, args.src)
    dst, dst_mirror = cliutil.resolve(args, args.dst)
    client = client_for(args, src, src_mirror, extra=[(dst, dst_mirror)])
    tags = _select(args, src, client)
    rebuild = args.update_index
    if tags is None and rebuild:
        tags = [t for t in oci.list_tags(src, missing_ok=False, client=client) if t != INDEX_TAG]
    reporter = Reporter("copy", quiet=args.quiet or args.json)

    def progress(event: str, info: dict[str, Any]) -> None:
        reporter.on_event(event, info)

    try:
        results = oci.copy(
            src, dst, tags=tags, concurrency=args.jobs, progress=progress, client=client
        )
    finally:
        reporter.close()
    for r in results:
        reporter.item(_line(r))
    count = summary(results)
    data: dict[str, Any] = {"src": src, "dst": dst, "tags": [_as_dict(r) for r in results]}
    data["summary"] = count
    if rebuild and count["failed"] == 0:
        index = _rebuild_index(dst, client)
        data["index"] = {"mode": index.mode, "specs": index.specs, "skipped": index.skipped}
        reporter.item(f"index     rebuilt on {dst}: {index.specs} specs")
    elif tags is not None and INDEX_TAG not in tags:
        reporter.item("index     not copied (a subset of the tags): use --update-index")
    text = (
        f"{count['copied']} copied, {count['unchanged']} unchanged, {count['failed']} failed; "
        f"{count['blobs_uploaded']} blobs, {human_bytes(count['bytes_copied'])} uploaded"
    )
    if count["blobs_uploaded"] == 0 and count["failed"] == 0:
        text += " (nothing to upload: the destination is up to date)"
    if args.json:
        cliutil.print_json(data)
    elif not args.quiet:
        print(text)
    return cliutil.batch_exit(count["failed"], len(results))


def add_parser(sub: Any, common: argparse.ArgumentParser, client_for: Any) -> None:
    s = sub.add_parser(
        "copy",
        parents=[common],
        help="copy a build cache to another repository or registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("src", help="source repository (or a Spack mirror's name)")
    s.add_argument("dst", help="destination repository (or a Spack mirror's name)")
    s.add_argument(
        "--tags", action="append", metavar="GLOB", help="only tags matching (repeatable)"
    )
    s.add_argument("--spack-env", metavar="DIR", help="only the specs of this environment")
    s.add_argument(
        "--update-index", action="store_true", help="rebuild the index on DST, not copy it"
    )
    s.add_argument("--jobs", type=cliutil.positive_int, default=8, help="tags at a time")
    s.set_defaults(func=lambda args: cmd_copy(args, client_for))
