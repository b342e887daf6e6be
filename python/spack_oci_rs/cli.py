"""The ``spack-oci-rs`` command (also ``python -m spack_oci_rs``).

Subcommands: ``patch``, ``doctor``, ``tags``, ``inspect``, ``fetch``, ``push-dir``, ``index``.
Every subcommand takes ``--json`` for machine-readable output. Exit codes: 0 success,
1 failure, 2 usage error, 3 partial failure (some items of a batch failed).

Built on ``argparse`` from the standard library: the package is installed into the
interpreter that runs Spack, where every extra dependency is a liability.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import spack_oci_rs as oci

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _client(args: argparse.Namespace, ref: str) -> oci.Client:
    creds: dict[str, tuple[str, str]] = {}
    if args.username:
        password = os.environ.get(args.password_env or "", "")
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise SystemExit(
                "error: --username needs a password: --password-env VAR or --password-stdin"
            )
        creds[oci.parse_reference(ref)["domain"] or ""] = (args.username, password)
    tokens: dict[str, str] = {}
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            raise SystemExit(f"error: --token-env {args.token_env}: the variable is not set")
        tokens[oci.parse_reference(ref)["domain"] or ""] = token
    return oci.Client(
        credentials=creds,
        access_tokens=tokens,
        docker_config=args.docker_config,
        ca_certs=args.ca_cert or None,
        verify_ssl=not args.insecure,
        retries=args.retries,
    )


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_patch(args: argparse.Namespace) -> int:
    from . import patch

    argv = [args.action]
    if args.spack_root:
        argv += ["--spack-root", args.spack_root]
    return patch.main(argv)


def cmd_spack_doctor(args: argparse.Namespace) -> int:
    from . import spack_doctor

    try:
        data = spack_doctor.report(spack_doctor.find_spack(args.spack_root))
    except (spack_doctor.SpackNotFound, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAIL
    _out(args, data, spack_doctor.format_report(data))
    return EXIT_OK if data.get("installed") and data.get("mode") != "disabled" else EXIT_FAIL


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.spack:
        return cmd_spack_doctor(args)
    if args.ref is None:
        print("error: doctor needs a registry reference (or --spack)", file=sys.stderr)
        return EXIT_USAGE
    ref = args.ref
    parsed = oci.parse_reference(ref)
    where = f"{parsed['domain']}/{parsed['name']}"
    client = _client(args, ref)
    source = client.credentials_source(parsed["domain"] or "")
    p = oci.probe(ref, client=client)
    ok = p["pull"]["ok"]
    data = {"registry": parsed["domain"], "repository": parsed["name"], "credentials": source}
    data.update(p)
    lines = [
        f"registry     {parsed['domain']} ({'https' if parsed['scheme'] == 'https' else 'http'})",
        f"repository   {parsed['name']}",
        f"credentials  {source}",
        f"auth         {p['auth_scheme']}",
        f"protocol     {p['http_version']}",
        f"round trip   {p['rtt_ms']:.1f} ms (first request {p['connect_ms']:.1f} ms)",
        f"pull         {'ok' if p['pull']['ok'] else 'FAILED'}: {p['pull']['detail']}",
        f"push         {'ok' if p['push']['ok'] else 'no'}: {p['push']['detail']}",
        f"range        {_yes_no(p['range'])}",
        f"mount        {_yes_no(p['mount'])}",
    ]
    _out(args, data, "\n".join(lines))
    if not ok:
        print(f"error: cannot read {where}: {p['pull']['detail']}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAIL


def _yes_no(v: bool | None) -> str:
    return "unknown (no blob to try)" if v is None else ("yes" if v else "no")


def cmd_tags(args: argparse.Namespace) -> int:
    tags = oci.list_tags(args.ref, client=_client(args, args.ref))
    _out(args, tags, "\n".join(tags))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    manifest, config = oci.get_manifest_and_config(
        args.ref, args.arch, client=_client(args, args.ref)
    )
    layers = manifest.get("layers", [])
    spec = config.get("spec", {})
    nodes = spec.get("nodes", []) if isinstance(spec, dict) else []
    data = {"manifest": manifest, "config": config}
    lines = [
        f"media type   {manifest.get('mediaType')}",
        f"config       {manifest['config']['digest']} ({_human(manifest['config']['size'])})",
        f"platform     {config.get('os')}/{config.get('architecture')}",
    ]
    if nodes:
        root = nodes[0]
        lines.append(f"spec         {root.get('name')}@{root.get('version')} /{root.get('hash')}")
        lines.append(f"archive      {config.get('binary_cache_checksum', {}).get('hash', '?')}")
    lines.append(f"layers       {len(layers)}, {_human(sum(x['size'] for x in layers))}")
    for layer in layers:
        lines.append(f"  {layer['digest']}  {_human(layer['size']):>10}  {layer['mediaType']}")
    _out(args, data, "\n".join(lines))
    return EXIT_OK


def cmd_fetch(args: argparse.Namespace) -> int:
    client = _client(args, args.ref)
    parsed = oci.parse_reference(args.ref)
    digest = args.digest or parsed["digest"]
    dest = Path(args.dest)
    if digest and not args.image:
        size = oci.fetch_blob(args.ref, digest, dest, client=client)
        _out(args, {"digest": digest, "dest": str(dest), "size": size}, f"{digest} -> {dest}")
        return EXIT_OK
    manifest, _ = oci.get_manifest_and_config(args.ref, args.arch, client=client)
    dest.mkdir(parents=True, exist_ok=True)
    blobs = [manifest["config"], *manifest["layers"]]
    start = time.time()
    results = oci.fetch_blobs(
        [(args.ref, b["digest"], dest / b["digest"].replace(":", "-")) for b in blobs],
        client=client,
    )
    failed = [r for r in results if not r.ok]
    data = [
        {"digest": r.digest, "dest": str(r.dest), "ok": r.ok, "error": str(r.error or "")}
        for r in results
    ]
    total = sum(r.size or 0 for r in results)
    text = "\n".join(
        f"{'ok    ' if r.ok else 'FAILED'} {r.digest} {r.error or ''}".rstrip() for r in results
    )
    text += f"\n{len(results) - len(failed)}/{len(results)} blobs, {_human(total)} verified"
    text += f" in {time.time() - start:.2f}s"
    _out(args, data, text)
    return EXIT_OK if not failed else (EXIT_PARTIAL if len(failed) < len(results) else EXIT_FAIL)


def cmd_push_dir(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    parsed = oci.parse_reference(args.ref)
    tag = str(args.tag or parsed["tag"] or "latest")
    target = args.ref.split("@", 1)[0]
    if ":" in target.rsplit("/", 1)[-1]:
        target = target.rsplit(":", 1)[0]
    item = oci.PushItem(
        tag,
        prefix=directory,
        prefixes_to_relocate=[str(directory)],
        architecture=args.arch,
        annotations={"org.opencontainers.image.description": str(directory)},
    )
    tty = sys.stderr.isatty() and not args.json

    def progress(event: str, info: dict[str, Any]) -> None:
        if tty and event == "layer_done":
            rate = info["size"] / max(info["seconds"], 1e-3)
            print(
                f"layer {info['digest'][:19]}… {_human(info['size'])} "
                f"in {info['seconds']:.2f}s ({_human(rate)}/s)",
                file=sys.stderr,
            )

    (r,) = oci.push(
        target,
        [item],
        base_image=args.base_image,
        force=args.force,
        progress=progress,
        client=_client(args, args.ref),
    )
    data = {
        "tag": r.tag,
        "status": r.status,
        "manifest_digest": r.manifest_digest,
        "layer_digest": r.digest,
        "diff_id": r.diff_id,
        "size": r.size,
        "error": str(r.error) if r.error else None,
    }
    if r.status == "failed":
        if args.json:
            _out(args, data, "")
        else:
            print(f"error: {r.error}", file=sys.stderr)
        return EXIT_FAIL
    _out(args, data, f"{r.status} {target}:{r.tag} {r.manifest_digest or ''}".rstrip())
    return EXIT_OK


def cmd_index(args: argparse.Namespace) -> int:
    client = _client(args, args.ref)
    if args.rebuild:
        gathered = oci.build_index(args.ref, client=client)
        data = {
            "spec_tags": gathered.spec_tags,
            "configs": len(gathered.configs),
            "skipped": gathered.skipped,
        }
        text = f"{len(gathered.configs)} of {gathered.spec_tags} spec tags have a spec"
        text += "".join(f"\nskipped {t}: {why}" for t, why in gathered.skipped)
        text += (
            "\n(the index database is Spack's format: write it with "
            "`spack buildcache update-index`)"
        )
        _out(args, data, text)
        return EXIT_OK
    found = oci.fetch_index(args.ref, client=client)
    if found is None:
        _out(args, None, "no index (no index.spack tag)")
        return EXIT_FAIL
    digest, body = found
    index = json.loads(body or b"{}")
    installs = index.get("database", {}).get("installs", {})
    specs = sorted(
        f"{r['spec'].get('name')}@{r['spec'].get('version')} /{h[:7]}"
        for h, r in installs.items()
        if isinstance(r, dict) and isinstance(r.get("spec"), dict)
    )
    _out(
        args,
        {"digest": digest, "specs": specs},
        f"index {digest} ({len(specs)} specs)\n" + "\n".join(specs),
    )
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--username", help="registry username")
    common.add_argument(
        "--password-env", metavar="VAR", help="environment variable with the password"
    )
    common.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    common.add_argument(
        "--token-env", metavar="VAR", help="environment variable with a bearer access token"
    )
    common.add_argument(
        "--docker-config",
        action="store_true",
        help="also use the logins of docker login / podman login (and credential helpers)",
    )
    common.add_argument("--ca-cert", action="append", metavar="PEM", help="extra CA (file or dir)")
    common.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    common.add_argument(
        "--retries",
        type=int,
        help=f"attempts per request (default {oci.Client.DEFAULTS['retries']})",
    )

    p = argparse.ArgumentParser(
        prog="spack-oci-rs",
        description="Spack OCI build caches on a Rust engine. References are oci://host/repo "
        "(https), oci+http://host/repo (plain http) or host/repo:tag.",
    )
    p.add_argument("--version", action="version", version=f"spack-oci-rs {oci.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("patch", parents=[common], help="apply, check or revert the Spack patch")
    s.add_argument("action", choices=["apply", "check", "revert"])
    s.add_argument("--spack-root", default=os.environ.get("SPACK_ROOT"))
    s.set_defaults(func=cmd_patch)

    s = sub.add_parser(
        "doctor", parents=[common], help="check a registry and repository, or a Spack (--spack)"
    )
    s.add_argument("ref", nargs="?")
    s.add_argument(
        "--spack", action="store_true", help="what the plugin does in the Spack on PATH"
    )
    s.add_argument("--spack-root", help="that Spack instead of the one on PATH")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("tags", parents=[common], help="list tags")
    s.add_argument("ref")
    s.set_defaults(func=cmd_tags)

    s = sub.add_parser("inspect", parents=[common], help="show manifest, config and layers")
    s.add_argument("ref")
    s.add_argument("--arch", default="amd64")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("fetch", parents=[common], help="fetch a blob, or every blob of an image")
    s.add_argument("ref", help="an image (ref:tag) or a blob (ref@sha256:…)")
    s.add_argument("dest", help="a file for a blob, a directory for an image")
    s.add_argument("--digest", help="the blob to fetch")
    s.add_argument("--image", action="store_true", help="treat ref@digest as an image")
    s.add_argument("--arch", default="amd64")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser(
        "push-dir", parents=[common], help="push a directory as a Spack-style image"
    )
    s.add_argument("dir")
    s.add_argument("ref", help="target repository, with the tag to push (repo:tag)")
    s.add_argument("--tag", help="the tag (default: the one in ref)")
    s.add_argument("--base-image")
    s.add_argument("--arch", default="amd64")
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_push_dir)

    s = sub.add_parser("index", parents=[common], help="show (or gather) the build-cache index")
    s.add_argument("ref")
    s.add_argument("--rebuild", action="store_true", help="gather the spec configs")
    s.set_defaults(func=cmd_index)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except oci.OciError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(e).__name__, "message": str(e), "status": e.status}))
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
