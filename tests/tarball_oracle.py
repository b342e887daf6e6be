"""A reference build-cache tarball writer in pure Python, for comparing bytes with ours.

It reproduces the observable behaviour of Spack v1.1.0's ``_do_create_tarball`` with CPython's
``tarfile`` and ``gzip`` configured as Spack configures them, so it needs no Spack checkout:

* gzip: ``GzipFile(filename="", mode="wb", compresslevel=6, mtime=0)``; sha256 of the gzip
  bytes and, separately, of the tar bytes written into it;
* tar: ``tarfile.TarFile(mode="w")`` with the default PAX format;
* members: the directories leading to the prefix (mode 0o755), then a depth-first walk where
  each directory lists its non-directory entries sorted by name before descending into its
  subdirectories (sorted); uid/gid 0, mtime 0, no user/group names; directories 0o755,
  symlinks 0o755, files 0o755 when owner-executable else 0o644; regular files with several
  links become hard links to the first name seen; FIFOs, sockets and devices are left out;
  any entry with the inode of ``<prefix>/.spack/binary_distribution`` is left out;
* relocation: files with ELF/Mach-O magic; text files (UTF-8, else ISO-8859-1 without NUL
  and 0x7f-0x9f; at least 8 bytes) that contain a prefix to relocate not preceded by a path;
  absolute symlinks starting with one. Nothing in the top-level ``.spack`` directory is
  classified except symlinks;
* the buildinfo, ``dict(buildinfo)`` updated with the three lists and serialized by ``dump``,
  appended last as ``<prefix>/.spack/binary_distribution`` with mode 0o644.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import re
import tarfile
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

_ELF = b"\x7fELF"
_MACHO = (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xce")
_CONTROL = re.compile(b"[\x00\x7f-\x9f]")


class _Hashing:
    """Forwards writes and hashes them. Never flushes the target (a flush would end a deflate
    block in GzipFile)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self.target.write(data)
        self.sha.update(data)
        self.count += len(data)
        return len(data)

    def tell(self) -> int:
        return self.count


def member_name(path: str) -> str:
    """The member name of an absolute path: its normalized parts after the root."""
    parts = pathlib.PurePosixPath(path).parts
    return "/".join(parts[1:])


def is_binary(magic: bytes) -> bool:
    if magic.startswith(_ELF) or magic.startswith(_MACHO):
        return True
    count = int.from_bytes(magic[4:8], "big")
    if magic.startswith(b"\xca\xfe\xba\xbe") and count < 10:
        return True
    count = int.from_bytes(magic[4:8], "little")
    return magic.startswith(b"\xbe\xba\xfe\xca") and count < 10


def is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return _CONTROL.search(data) is None


def prefix_regex(prefixes: Sequence[str]) -> re.Pattern[bytes]:
    """A prefix, optionally glued to a run of word characters, that does not continue a path
    (no ``/`` before that run)."""
    alternatives = b"|".join(re.escape(p.encode("utf-8")) for p in prefixes)
    word = rb"[\w\-_]"
    return re.compile(rb"(?<![\w\-_/])(" + word + rb"*?)(" + alternatives + rb")([\w\-_/]*)")


def create_tarball(
    dest: str,
    prefix: str,
    buildinfo: dict[str, Any],
    prefixes_to_relocate: Sequence[str],
    dump: Callable[[dict[str, Any]], bytes],
) -> tuple[str, str, dict[str, list[str]]]:
    """Write the tarball; return (gzip sha256 hex, tar sha256 hex, relocation lists)."""
    if not os.path.isabs(prefix) or not os.path.isdir(prefix):
        raise ValueError(f"bad prefix {prefix}")
    regex = prefix_regex(prefixes_to_relocate)
    lists: dict[str, list[str]] = {
        "relocate_binaries": [],
        "relocate_links": [],
        "relocate_textfiles": [],
    }
    try:
        st = os.lstat(os.path.join(prefix, ".spack", "binary_distribution"))
        skip_key: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        skip_key = None

    with open(dest, "wb") as raw:
        gz_hash = _Hashing(raw)
        gz = gzip.GzipFile(filename="", mode="wb", compresslevel=6, mtime=0, fileobj=gz_hash)  # type: ignore[arg-type]
        tar_hash = _Hashing(gz)
        tar = tarfile.TarFile(name="", mode="w", fileobj=tar_hash)  # type: ignore[arg-type]

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)

        base = member_name(prefix)
        parents = list(reversed(pathlib.PurePosixPath(base).parents))[1:]
        for parent in parents:
            add_dir(str(parent))

        seen_inodes: dict[tuple[int, int], str] = {}
        stack = [prefix]
        while stack:
            directory = stack.pop()
            add_dir(member_name(directory))
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
            subdirs = []
            for entry in entries:
                if skip_key is not None:
                    s = entry.stat(follow_symlinks=False)
                    if (s.st_dev, s.st_ino) == skip_key:
                        continue
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.path)
                    continue
                rel = os.path.relpath(entry.path, prefix)
                info = tarfile.TarInfo(member_name(entry.path))
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    info.type = tarfile.SYMTYPE
                    info.linkname = target
                    info.mode = 0o755
                    if target.startswith("/") and regex.match(target.encode("utf-8")):
                        lists["relocate_links"].append(rel)
                    tar.addfile(info)
                elif entry.is_file(follow_symlinks=False):
                    s = os.lstat(entry.path)
                    info.mode = 0o755 if s.st_mode & 0o100 else 0o644
                    if s.st_nlink > 1:
                        key = (s.st_dev, s.st_ino)
                        if key in seen_inodes:
                            info.type = tarfile.LNKTYPE
                            info.linkname = seen_inodes[key]
                            tar.addfile(info)
                            continue
                        seen_inodes[key] = info.name
                    info.size = s.st_size
                    with open(entry.path, "rb") as f:
                        _classify(f, rel, regex, lists)
                        tar.addfile(info, f)
            stack.extend(reversed(subdirs))

        full = dict(buildinfo)
        full.update(lists)
        data = dump(full)
        info = tarfile.TarInfo(member_name(os.path.join(prefix, ".spack", "binary_distribution")))
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
        tar.close()
        gz.close()
    return gz_hash.sha.hexdigest(), tar_hash.sha.hexdigest(), lists


def _classify(
    f: BinaryIO, rel: str, regex: re.Pattern[bytes], lists: dict[str, list[str]]
) -> None:
    if rel.split(os.sep, 1)[0] == ".spack":
        return
    data = f.read()
    f.seek(0)
    if len(data) < 8:
        return
    if is_binary(data[:8]):
        lists["relocate_binaries"].append(rel)
    elif is_text(data) and regex.search(data):
        lists["relocate_textfiles"].append(rel)
