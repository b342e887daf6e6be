"""The signing subcommands of ``spack-oci-rs``: ``keygen``, ``sign``, ``verify``.

Signatures are cosign's layout (see ``docs/signing.md``); keys are ECDSA P-256 in PEM.
Errors go to stderr; exit 0 on success, 1 when an image is refused or a call fails, 2 for
usage errors.
"""

from __future__ import annotations

import argparse
from typing import Any

import spack_oci_rs as oci

from .cli import _client, _out
from .cliutil import EXIT_OK, resolve


def cmd_keygen(args: argparse.Namespace) -> int:
    private, public = oci.generate_key_pair(args.out)
    _out(
        args,
        {"private_key": private, "public_key": public},
        f"private key  {private} (keep it secret: mode 0600)\npublic key   {public}",
    )
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    ref, mirror = resolve(args, args.ref)
    digest = oci.sign(ref, args.key, client=_client(args, ref, mirror))
    _out(args, {"ref": ref, "digest": digest}, f"signed {ref} ({digest})")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    ref, mirror = resolve(args, args.ref)
    v = oci.verify(ref, args.key, client=_client(args, ref, mirror))
    _out(
        args,
        {"ref": ref, "digest": v.digest, "key": v.key, "fingerprint": v.fingerprint},
        f"verified {ref} ({v.digest}): signed by {v.key}",
    )
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommands on the ``spack-oci-rs`` parser."""
    s = sub.add_parser("keygen", parents=[common], help="make an ECDSA P-256 signing key pair")
    s.add_argument(
        "--out", default="spack-oci", metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub"
    )
    s.set_defaults(func=cmd_keygen)

    s = sub.add_parser("sign", parents=[common], help="sign an image (cosign layout)")
    s.add_argument("ref")
    s.add_argument("--key", required=True, help="private key (PKCS#8 PEM)")
    s.set_defaults(func=cmd_sign)

    s = sub.add_parser("verify", parents=[common], help="verify an image's signature")
    s.add_argument("ref")
    s.add_argument(
        "--key", required=True, action="append", help="trusted public key (PEM); repeatable"
    )
    s.set_defaults(func=cmd_verify)
