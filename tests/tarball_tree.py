"""A test prefix with every kind of entry that Spack's tarball code treats specially, shared by
test_tarball.py (against tarball_oracle.py) and test_tarball_spack.py (against Spack)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def dump_json(d: dict[str, Any]) -> bytes:
    return json.dumps(d, ensure_ascii=False).encode("utf-8")


def buildinfo_for(store: Path, prefix: Path) -> dict[str, Any]:
    return {
        "sbang_install_path": f"{store}/bin/sbang",
        "buildpath": str(store),
        "spackprefix": "/opt/spack-src",
        "relative_prefix": os.path.relpath(prefix, store),
        "hardlinks_deduped": True,
        "hash_to_prefix": {"abcdef": str(prefix)},
    }


def write(path: Path, data: bytes | str, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)


def bpath(base: Path, *parts: bytes) -> bytes:
    return os.path.join(os.fsencode(base), *parts)


def make_tree(prefix: Path, store: Path) -> None:
    """A prefix with every kind of entry Spack handles specially."""
    p = str(prefix)
    elf = Path("/bin/true").read_bytes()
    # Text files: relocated or not.
    write(prefix / "share/with-prefix.txt", f"path={p}/lib\n")
    write(prefix / "share/without.txt", "no prefix here\n")
    write(prefix / "share/after-a-path.txt", f"/usr{p}/lib\n")
    write(prefix / "share/word-glued.txt", f"CFLAGS=-I{p}/include\n")
    write(prefix / "share/store-only.txt", f"see {store}/other\n")
    write(prefix / "share/latin1.txt", b"caf\xe9 " + p.encode() + b"\n")
    write(prefix / "share/c1-control.txt", b"\x85 " + p.encode() + b"\n")
    write(prefix / "share/utf8-with-nul.txt", b"a\x00b " + p.encode() + b"\n")
    write(prefix / "share/short", b"/x")
    write(prefix / "share/binary-with-prefix.dat", b"\x00\xff\xfe" + p.encode() + bytes(100))
    write(prefix / "share/caf\u00e9.txt", f"{p}\n")
    write(prefix / "share/\U0001f600", b"emoji name\n")
    # Binaries and look-alikes.
    write(prefix / "lib/libfake.so", elf)
    write(prefix / "lib/fake.dylib", b"\xcf\xfa\xed\xfe" + bytes(60))
    write(prefix / "lib/Foo.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(40))
    write(prefix / "lib/fat.dylib", b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + bytes(40))
    # Modes.
    write(prefix / "bin/script", f"#!{p}/bin/python\nprint(1)\n", mode=0o700)
    write(prefix / "bin/group-exec", "x" * 20, mode=0o070)
    write(prefix / "bin/owner-exec-only", "y" * 20, mode=0o100)
    # Sizes around block boundaries and the 1 MiB read chunk.
    write(prefix / "empty-file", b"")
    write(prefix / "exactly-512", b"z" * 512)
    write(prefix / "big/random.bin", os.urandom(3 << 20))
    write(prefix / "big/text.txt", "a" * ((1 << 20) - 3) + f" {p}/x\n" + "b" * 50000)
    # Directories.
    (prefix / "empty-dir").mkdir()
    write(prefix / "nested/a/b/c/d/leaf.txt", "leaf\n")
    # Symlinks.
    lib = prefix / "lib"
    os.symlink("libfake.so", lib / "libfake.so.1")
    os.symlink(f"{p}/lib/libfake.so", lib / "abs-into-prefix")
    os.symlink("/usr/lib/libc.so.6", lib / "abs-elsewhere")
    os.symlink("does-not-exist", lib / "dangling")
    os.symlink(f"{p}/nothing-here", lib / "abs-dangling-into-prefix")
    os.symlink(f"{store}/other-pkg/lib", lib / "into-store")
    os.symlink("t" * 150, lib / "long-target")
    os.symlink("nested", prefix / "link-to-dir")
    # Hard links: the first name in archive order carries the data.
    write(prefix / "bin/tool", elf, mode=0o755)
    os.link(prefix / "bin/tool", prefix / "bin/tool-alias")
    os.link(prefix / "bin/tool", prefix / "aaa-first-name")
    # Long names: > 100 characters, and a path > 255.
    write(prefix / ("l" * 120), "long name\n")
    write(prefix / ("d" * 200) / ("e" * 200) / ("f" * 250), f"{p}\n")
    # Names that are not UTF-8, and the ordering Python gives them (by code point of the
    # surrogate-escaped name, not by bytes).
    os.mkdir(bpath(prefix, b"odd"))
    for name in (b"\xff-data", b"\xee\x80\x80", b"\xc3\xa9", b"z"):
        with open(bpath(prefix, b"odd", name), "wb") as f:
            f.write(b"\x00\xff binary data")
    os.mkdir(bpath(prefix, b"dir-\xfe"))
    with open(bpath(prefix, b"dir-\xfe", b"inside"), "wb") as f:
        f.write(b"\x00\x85 not text, in a non-UTF-8 directory\n")
    # .spack: not classified (except symlinks), the old buildinfo skipped wherever linked.
    write(prefix / ".spack/spec.json", json.dumps({"prefix": p}))
    write(prefix / ".spack/sub/elf", elf)
    os.symlink(f"{p}/lib", prefix / ".spack/abs-link")
    write(prefix / ".spack/binary_distribution", "old buildinfo\n")
    os.link(prefix / ".spack/binary_distribution", prefix / "share/old-buildinfo-link")
    # Left out: FIFOs.
    os.mkfifo(prefix / "share/pipe")


def make_buildinfo_variant(prefix: Path, kind: str) -> None:
    """A small prefix whose existing ``.spack/binary_distribution`` is a ``file``, a
    ``symlink`` (to a file that stays), a ``directory``, or ``absent``."""
    write(prefix / "bin" / "x", f"#!{prefix}/bin/sh\n", mode=0o755)
    write(prefix / ".spack" / "spec.json", "{}")
    bd = prefix / ".spack" / "binary_distribution"
    if kind == "file":
        write(bd, "old")
    elif kind == "symlink":
        write(prefix / ".spack" / "real-buildinfo", "old")
        os.symlink("real-buildinfo", bd)
    elif kind == "directory":
        write(bd / "inside", "old")
    elif kind != "absent":
        raise ValueError(kind)
