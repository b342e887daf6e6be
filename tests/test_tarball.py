"""create_tarball against a pure-Python reference (tarball_oracle.py) configured as Spack
configures tarfile and gzip: same compressed bytes, digests, sizes and relocation lists.

The >8 GiB member (PAX ``size`` record) is covered by the Rust unit tests with a synthetic
size (src/tarball/header.rs); streaming 8 GiB through zlib twice takes over a minute, so the
end-to-end version only runs with SPACK_OCI_RS_SLOW_TESTS=1.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spack_oci_rs
from spack_oci_rs import InvalidArgumentError, LocalFileError, create_tarball
from tarball_oracle import create_tarball as oracle_create_tarball
from tarball_tree import (
    bpath,
    buildinfo_for,
    dump_json,
    make_buildinfo_variant,
    make_tree,
    write,
)


def build_both(
    tmp_path: Path,
    prefix: str,
    prefixes: list[str],
    buildinfo: dict[str, Any],
    dump: Callable[[dict[str, Any]], bytes] = dump_json,
) -> tuple[bytes, spack_oci_rs.TarballInfo, bytes, tuple[str, str, dict[str, list[str]]]]:
    ours = tmp_path / "ours.tar.gz"
    theirs = tmp_path / "theirs.tar.gz"
    info = create_tarball(
        prefix, str(ours), prefixes_to_relocate=prefixes, buildinfo=buildinfo, dump=dump
    )
    expected = oracle_create_tarball(str(theirs), prefix, dict(buildinfo), prefixes, dump)
    return ours.read_bytes(), info, theirs.read_bytes(), expected


def assert_same(
    ours: bytes,
    info: spack_oci_rs.TarballInfo,
    theirs: bytes,
    expected: tuple[str, str, dict[str, list[str]]],
) -> None:
    gz_hex, tar_hex, lists = expected
    assert info.relocate_binaries == lists["relocate_binaries"]
    assert info.relocate_links == lists["relocate_links"]
    assert info.relocate_textfiles == lists["relocate_textfiles"]
    if ours != theirs:
        # Point at the first differing member rather than at a byte offset.
        assert member_summary(ours) == member_summary(theirs)
        assert ours == theirs
    assert info.checksum == gz_hex
    assert info.uncompressed_checksum == tar_hex
    assert info.compressed_digest == f"sha256:{gz_hex}"
    assert info.uncompressed_digest == f"sha256:{tar_hex}"
    assert info.size == len(ours)
    assert info.uncompressed_size == gunzip_len(ours)


def gunzip_len(data: bytes) -> int:
    d = zlib.decompressobj(zlib.MAX_WBITS | 16)
    n = 0
    for i in range(0, len(data), 1 << 20):
        n += len(d.decompress(data[i : i + (1 << 20)]))
    return n + len(d.flush())


def member_summary(data: bytes) -> list[tuple[Any, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        return [
            (m.name, m.type, m.mode, m.size, m.linkname, m.uid, m.gid, m.mtime, m.pax_headers)
            for m in t.getmembers()
        ]


def test_rich_prefix_matches_reference(tmp_path: Path, prefix: Path, store: Path) -> None:
    prefixes = [str(prefix), f"{store}/bin/sbang", str(store)]
    ours, info, theirs, expected = build_both(
        tmp_path, str(prefix), prefixes, buildinfo_for(store, prefix)
    )
    assert_same(ours, info, theirs, expected)

    # Spot checks of what the comparison covers.
    assert "aaa-first-name" in info.relocate_binaries
    assert {"lib/fake.dylib", "lib/fat.dylib", "lib/libfake.so"} <= set(info.relocate_binaries)
    assert "bin/tool-alias" not in info.relocate_binaries
    assert "lib/Foo.class" not in info.relocate_binaries
    text = set(info.relocate_textfiles)
    assert {
        "share/with-prefix.txt",
        "share/word-glued.txt",
        "share/store-only.txt",
        "share/latin1.txt",
        "share/utf8-with-nul.txt",
        "share/caf\u00e9.txt",
        "bin/script",
        "big/text.txt",
        f"{'d' * 200}/{'e' * 200}/{'f' * 250}",
    } <= text
    assert (
        not {
            "share/without.txt",
            "share/after-a-path.txt",
            "share/c1-control.txt",
            "share/binary-with-prefix.dat",
            ".spack/spec.json",
        }
        & text
    )
    assert info.relocate_links == [
        ".spack/abs-link",
        "lib/abs-dangling-into-prefix",
        "lib/abs-into-prefix",
        "lib/into-store",
    ]
    members = member_summary(ours)
    names = [m[0] for m in members]
    base = str(prefix).lstrip("/")
    assert names[0] == base.split("/")[0]
    assert names[-1] == f"{base}/.spack/binary_distribution"
    assert f"{base}/share/old-buildinfo-link" not in names
    assert f"{base}/share/pipe" not in names
    assert names.count(f"{base}/.spack/binary_distribution") == 1


def test_unusual_prefix_spellings(tmp_path: Path, prefix: Path, store: Path) -> None:
    spellings = [
        f"{prefix}/",
        str(prefix).replace("/opt/", "//opt/./"),
        str(prefix).replace("/opt/spack/", "/opt/spack/linux-x86_64/../"),
    ]
    link = tmp_path / "prefix-link"
    os.symlink(prefix, link)
    spellings.append(str(link))
    for spelling in spellings:
        out = tmp_path / "cmp"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        ours, info, theirs, expected = build_both(
            out, spelling, [str(prefix)], buildinfo_for(store, prefix)
        )
        assert_same(ours, info, theirs, expected)


@pytest.mark.parametrize(
    "prefixes",
    [
        [],  # Spack's regex then matches everything
        ["/nowhere"],
        ["/opt/a+b(c)[d].e", "/x"],
        [""],
    ],
    ids=["none", "unrelated", "metacharacters", "empty-string"],
)
def test_prefix_lists(tmp_path: Path, prefix: Path, store: Path, prefixes: list[str]) -> None:
    ours, info, theirs, expected = build_both(
        tmp_path, str(prefix), prefixes, buildinfo_for(store, prefix)
    )
    assert_same(ours, info, theirs, expected)


@pytest.mark.parametrize("kind", ["file", "symlink", "directory", "absent"])
def test_existing_buildinfo_variants(tmp_path: Path, kind: str) -> None:
    prefix = tmp_path / "p"
    make_buildinfo_variant(prefix, kind)
    ours, info, theirs, expected = build_both(tmp_path, str(prefix), [str(prefix)], {})
    assert_same(ours, info, theirs, expected)


def test_non_ascii_and_long_prefix(tmp_path: Path) -> None:
    store = tmp_path / ("s" * 120) / "st\u00f6re"
    prefix = store / "linux" / "pk\u00e9-1.0-abc"
    prefix.mkdir(parents=True)
    make_tree(prefix, store)
    ours, info, theirs, expected = build_both(
        tmp_path, str(prefix), [str(prefix), str(store)], buildinfo_for(store, prefix)
    )
    assert_same(ours, info, theirs, expected)
    assert "bin/script" in info.relocate_textfiles


def test_minimal_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    prefix.mkdir()
    ours, info, theirs, expected = build_both(tmp_path, str(prefix), [str(prefix)], {})
    assert_same(ours, info, theirs, expected)
    assert info.relocate_binaries == info.relocate_links == info.relocate_textfiles == []


def test_dump_gets_updated_copy_in_spack_key_order(tmp_path: Path, prefix: Path) -> None:
    buildinfo = {"a": 1, "relocate_links": "placeholder", "z": 2}
    original = dict(buildinfo)
    seen: list[dict[str, Any]] = []

    def dump(d: dict[str, Any]) -> str:
        seen.append(d)
        return "{x: 1}\n"  # a str is encoded as UTF-8

    info = create_tarball(
        str(prefix),
        str(tmp_path / "t.tar.gz"),
        prefixes_to_relocate=[str(prefix)],
        buildinfo=buildinfo,
        dump=dump,
    )
    assert buildinfo == original
    assert len(seen) == 1
    assert list(seen[0]) == ["a", "relocate_links", "z", "relocate_binaries", "relocate_textfiles"]
    assert seen[0]["relocate_links"] == info.relocate_links
    assert seen[0]["relocate_binaries"] == info.relocate_binaries
    assert seen[0]["relocate_textfiles"] == info.relocate_textfiles
    with tarfile.open(tmp_path / "t.tar.gz") as t:
        last = t.getmembers()[-1]
        f = t.extractfile(last)
        assert f is not None
        assert f.read() == b"{x: 1}\n"
        assert last.mode == 0o644


def test_default_dump_is_json(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    write(prefix / "bin/x", f"#!{prefix}/bin/sh\n")
    buildinfo = {"k": "v\u00e9"}
    create_tarball(
        str(prefix),
        str(tmp_path / "t.tar.gz"),
        prefixes_to_relocate=[str(prefix)],
        buildinfo=buildinfo,
    )
    with tarfile.open(tmp_path / "t.tar.gz") as t:
        f = t.extractfile(t.getmembers()[-1])
        assert f is not None
        data = f.read()
    expected = {
        "k": "v\u00e9",
        "relocate_binaries": [],
        "relocate_links": [],
        "relocate_textfiles": ["bin/x"],
    }
    assert json.loads(data) == expected
    assert data == json.dumps(expected).encode()


def test_dump_exception_propagates_and_leaves_nothing(tmp_path: Path, prefix: Path) -> None:
    class Boom(Exception):
        pass

    def dump(d: dict[str, Any]) -> bytes:
        raise Boom("no yaml today")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(Boom, match="no yaml today"):
        create_tarball(
            str(prefix), str(out / "t.tar.gz"), prefixes_to_relocate=[], buildinfo={}, dump=dump
        )
    assert list(out.iterdir()) == []

    with pytest.raises(InvalidArgumentError, match="bytes or str"):
        create_tarball(
            str(prefix),
            str(out / "t.tar.gz"),
            prefixes_to_relocate=[],
            buildinfo={},
            dump=lambda d: 42,  # type: ignore[arg-type,return-value]
        )
    assert list(out.iterdir()) == []


def test_dest_is_replaced_atomically(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    write(prefix / "f", "x")
    dest = tmp_path / "t.tar.gz"
    dest.write_bytes(b"old")
    info = create_tarball(str(prefix), dest, prefixes_to_relocate=[], buildinfo={})
    assert dest.read_bytes() != b"old"
    assert info.size == dest.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "t.tar.gz"]
    assert "TarballInfo(checksum=" in repr(info)


def test_bad_prefixes(tmp_path: Path) -> None:
    dest = str(tmp_path / "t.tar.gz")
    missing = tmp_path / "missing"
    with pytest.raises(LocalFileError, match=str(missing)) as e:
        create_tarball(str(missing), dest, prefixes_to_relocate=[], buildinfo={})
    assert isinstance(e.value, OSError)
    with pytest.raises(InvalidArgumentError, match="relative/prefix") as e2:
        create_tarball("relative/prefix", dest, prefixes_to_relocate=[], buildinfo={})
    assert isinstance(e2.value, ValueError)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(InvalidArgumentError, match=str(a_file)):
        create_tarball(str(a_file), dest, prefixes_to_relocate=[], buildinfo={})
    with pytest.raises(InvalidArgumentError):
        create_tarball("/", dest, prefixes_to_relocate=[], buildinfo={})
    prefix = tmp_path / "p"
    prefix.mkdir()
    with pytest.raises(LocalFileError, match="no-such-dir"):
        create_tarball(
            str(prefix),
            str(tmp_path / "no-such-dir" / "t.tar.gz"),
            prefixes_to_relocate=[],
            buildinfo={},
        )
    with pytest.raises(TypeError):
        create_tarball(str(prefix), dest, prefixes_to_relocate="/opt", buildinfo={})  # type: ignore[arg-type]
    assert not Path(dest).exists()


def test_non_utf8_name_to_relocate_is_an_error(tmp_path: Path) -> None:
    # Spack lists it surrogate-escaped (see test_tarball_spack.py); we refuse.
    prefix = tmp_path / "p"
    prefix.mkdir()
    with open(bpath(prefix, b"lib\xff.so"), "wb") as f:
        f.write(Path("/bin/true").read_bytes())
    dest = tmp_path / "t.tar.gz"
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        create_tarball(str(prefix), str(dest), prefixes_to_relocate=[], buildinfo={})
    assert not dest.exists()


_ATTEMPT = textwrap.dedent(
    """
    import sys, os, spack_oci_rs
    prefix, dest = sys.argv[1:3] if len(sys.argv) > 2 else (os.environ["P"], os.environ["D"])
    try:
        spack_oci_rs.create_tarball(prefix, dest, prefixes_to_relocate=[], buildinfo={})
    except Exception as e:
        print(type(e).__name__, "|", e)
    else:
        print("OK")
    print("EXISTS" if os.path.exists(dest) else "ABSENT")
    """
)


def _without_dac_override() -> list[str]:
    """A command prefix that runs a program unable to bypass file permissions."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing")
    probe = subprocess.run(
        [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "true"],
        capture_output=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE: {probe.stderr.decode().strip()}")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.mark.parametrize("what", ["file", "directory"])
def test_unreadable_entries(tmp_path: Path, what: str) -> None:
    runner = _without_dac_override()
    prefix = tmp_path / "p"
    write(prefix / "ok", "fine")
    target = prefix / "secret"
    if what == "file":
        write(target, "secret")
    else:
        write(target / "inside", "secret")
    target.chmod(0)
    dest = tmp_path / "t.tar.gz"
    try:
        env = {**os.environ, "P": str(prefix), "D": str(dest)}
        r = subprocess.run(
            [*runner, sys.executable, "-c", _ATTEMPT],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        target.chmod(0o755)
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    assert lines[0].startswith("LocalFileError | "), r.stdout
    assert str(target) in lines[0]
    assert "ermission denied" in lines[0]
    assert lines[1] == "ABSENT"


def test_file_changing_size(tmp_path: Path) -> None:
    """A procfs file bind-mounted into the prefix: stat says 0 bytes, reading gives more."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (util-linux) for a private bind mount")
    prefix = tmp_path / "p"
    write(prefix / "grows", "")
    dest = tmp_path / "t.tar.gz"
    script = (
        f"mount --bind /proc/version {prefix / 'grows'} && "
        f'exec "{sys.executable}" -c "$ATTEMPT" {prefix} {dest}'
    )
    r = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ATTEMPT": _ATTEMPT},
    )
    if r.returncode != 0 and "mount" in r.stderr:
        pytest.skip(f"cannot bind-mount in a private namespace: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    assert lines and lines[0].startswith("LocalFileError | "), (r.stdout, r.stderr)
    assert "changed size" in lines[0]
    assert str(prefix / "grows") in lines[0]
    assert lines[1] == "ABSENT"


def test_ctrl_c_stops_the_build(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    prefix.mkdir()
    with open(prefix / "random.bin", "wb") as f:
        for _ in range(192):
            f.write(os.urandom(1 << 20))  # incompressible: seconds of zlib
    out = tmp_path / "out"
    out.mkdir()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            create_tarball(prefix, out / "t.tar.gz", prefixes_to_relocate=[], buildinfo={})
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 3.0
    assert list(out.iterdir()) == []


@pytest.mark.skipif(
    os.environ.get("SPACK_OCI_RS_SLOW_TESTS") != "1",
    reason="streams 8 GiB through zlib twice (minutes); set SPACK_OCI_RS_SLOW_TESTS=1",
)
def test_member_over_8_gib(tmp_path: Path) -> None:
    prefix = tmp_path / "p"
    prefix.mkdir()
    with open(prefix / "sparse", "wb") as f:
        f.truncate((8 << 30) + 1)
    ours, info, theirs, expected = build_both(tmp_path, str(prefix), [], {})
    assert_same(ours, info, theirs, expected)
    sizes = {m[0].rsplit("/", 1)[-1]: (m[3], m[8]) for m in member_summary(ours)}
    assert sizes["sparse"] == ((8 << 30) + 1, {"size": str((8 << 30) + 1)})
