"""Signing and verification policy of the Spack adapter (``config:oci_sign_key``,
``config:oci_trusted_keys``).

With ``oci_sign_key`` set, every image the Rust backend pushes and the index it uploads are
signed (cosign layout). With ``oci_trusted_keys`` set, images and indexes from OCI mirrors
are accepted only when signed by one of those keys, unless the mirror is marked
``--unsigned`` or the install says ``--no-check-signature`` (``unsigned=True``), exactly
where Spack skips its GPG check. A refused image is never installed from that mirror.
"""

from __future__ import annotations

import os
from typing import Any

import spack.config
import spack.llnl.util.tty as tty

#: Refusals already reported, so that each is said once per process.
_REPORTED: set[str] = set()


def _path(p: str) -> str:
    return os.path.abspath(os.path.expanduser(os.path.expandvars(p)))


def sign_key() -> str | None:
    """The private key to sign with, or None."""
    key = spack.config.get("config:oci_sign_key", None)
    return _path(str(key)) if key else None


def _mirror_signed(domain: str, name: str) -> bool:
    """Whether the OCI mirror ``domain/name`` is a signed one (not ``--unsigned``). Read from
    the mirror's own configuration: Spack develop's ``Mirror.signed`` is False for every OCI
    mirror (Spack itself cannot sign them)."""
    import spack.mirrors.mirror

    from .spack import image_ref_from_url, is_oci_url

    for mirror in spack.mirrors.mirror.MirrorCollection(binary=True).values():
        if is_oci_url(mirror.fetch_url):
            ref = image_ref_from_url(mirror.fetch_url)
            if (ref.domain, ref.name) == (domain, name):
                data = getattr(mirror, "_data", None)
                return not isinstance(data, dict) or bool(data.get("signed", True))
    return True


def trusted_keys(domain: str, name: str, unsigned: bool | None = None) -> list[str] | None:
    """The public keys an image of ``domain/name`` must be signed by, or None when no check
    applies (no trusted keys configured, ``unsigned`` install, or an ``--unsigned`` mirror).
    ``unsigned`` is Spack's: ``True``/``False`` overrides the mirror's default."""
    keys = spack.config.get("config:oci_trusted_keys", None)
    if not keys:
        return None
    skip = unsigned if unsigned is not None else not _mirror_signed(domain, name)
    return None if skip else [_path(str(k)) for k in keys]


def unsigned_of(install_args: list[dict[str, Any]]) -> bool | None:
    """The old installer's ``--no-check-signature`` (``install_args["unsigned"]`` of its
    build requests): True only when every request says so."""
    flags = [args.get("unsigned") for args in install_args]
    return True if flags and all(f is True for f in flags) else None


def report_refusal(ref: str, reason: BaseException) -> None:
    """One line naming the spec (its tag), the mirror and the reason, once per image."""
    if ref in _REPORTED:
        return
    _REPORTED.add(ref)
    where, _, tag = ref.rpartition(":")
    tty.warn(f"Not installing {tag} from OCI mirror {where.split('://', 1)[-1]}: {reason}")
