"""create_tarball against Spack's own ``binary_distribution._do_create_tarball``: same bytes,
checksums and relocation lists, with Spack's YAML dump as the buildinfo serializer.

Runs when SPACK_ROOT names a Spack checkout (tested with v1.1.0), e.g.
``SPACK_ROOT=/path/to/spack pytest tests/test_tarball_spack.py``; skipped otherwise.
Only Spack's modules are imported: no configuration, store or solver is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from spack_oci_rs import InvalidArgumentError, create_tarball
from tarball_tree import bpath, buildinfo_for, make_buildinfo_variant, make_tree, write


def _import_spack() -> tuple[ModuleType, ModuleType]:
    root = os.environ.get("SPACK_ROOT")
    if not root:
        pytest.skip("SPACK_ROOT is not set: no Spack checkout to compare with")
    lib = Path(root) / "lib" / "spack"
    if not (lib / "spack" / "binary_distribution.py").is_file():
        pytest.fail(f"SPACK_ROOT={root} is not a Spack checkout (no {lib}/spack)")
    # As bin/spack does; Spack < 1.0 also needs its external/vendored directories.
    for p in (lib / "external" / "_vendoring", lib / "external", lib):
        if p.is_dir() and str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import spack.binary_distribution as bindist
    import spack.util.spack_yaml as syaml

    return bindist, syaml


@pytest.fixture(scope="module")
def spack() -> tuple[ModuleType, ModuleType]:
    return _import_spack()


def spack_dump(syaml: ModuleType) -> Any:
    def dump(d: dict[str, Any]) -> bytes:
        return syaml.dump(d, default_flow_style=True).encode("utf-8")  # type: ignore[no-any-return]

    return dump


def compare(
    spack: tuple[ModuleType, ModuleType],
    out: Path,
    prefix: str,
    prefixes: list[str],
    buildinfo: dict[str, Any],
) -> None:
    bindist, syaml = spack
    out.mkdir(parents=True, exist_ok=True)
    theirs = out / "spack.tar.gz"
    ours = out / "ours.tar.gz"
    spack_buildinfo = dict(buildinfo)  # Spack updates it in place
    gz_hex, tar_hex = bindist._do_create_tarball(str(theirs), prefix, spack_buildinfo, prefixes)
    info = create_tarball(
        prefix,
        str(ours),
        prefixes_to_relocate=prefixes,
        buildinfo=buildinfo,
        dump=spack_dump(syaml),
    )
    assert info.relocate_binaries == spack_buildinfo["relocate_binaries"]
    assert info.relocate_links == spack_buildinfo["relocate_links"]
    assert info.relocate_textfiles == spack_buildinfo["relocate_textfiles"]
    assert ours.read_bytes() == theirs.read_bytes()
    assert info.checksum == gz_hex
    assert info.uncompressed_checksum == tar_hex
    assert info.size == theirs.stat().st_size


def test_rich_prefix(
    spack: tuple[ModuleType, ModuleType], tmp_path: Path, prefix: Path, store: Path
) -> None:
    prefixes = [str(prefix), f"{store}/bin/sbang", str(store)]
    compare(spack, tmp_path / "out", str(prefix), prefixes, buildinfo_for(store, prefix))


@pytest.mark.parametrize(
    "prefixes",
    [[], ["/nowhere"], ["/opt/a+b(c)[d].e", "/x"], [""]],
    ids=["none", "unrelated", "metacharacters", "empty-string"],
)
def test_prefix_lists(
    spack: tuple[ModuleType, ModuleType],
    tmp_path: Path,
    prefix: Path,
    store: Path,
    prefixes: list[str],
) -> None:
    compare(spack, tmp_path / "out", str(prefix), prefixes, buildinfo_for(store, prefix))


def test_prefix_spellings(
    spack: tuple[ModuleType, ModuleType], tmp_path: Path, prefix: Path, store: Path
) -> None:
    link = tmp_path / "prefix-link"
    os.symlink(prefix, link)
    spellings = [
        f"{prefix}/",
        str(prefix).replace("/opt/", "//opt/./"),
        str(prefix).replace("/opt/spack/", "/opt/spack/linux-x86_64/../"),
        str(link),
    ]
    for i, spelling in enumerate(spellings):
        compare(spack, tmp_path / f"out{i}", spelling, [str(prefix)], buildinfo_for(store, prefix))


@pytest.mark.parametrize("kind", ["file", "symlink", "directory", "absent"])
def test_existing_buildinfo_variants(
    spack: tuple[ModuleType, ModuleType], tmp_path: Path, kind: str
) -> None:
    prefix = tmp_path / "p"
    make_buildinfo_variant(prefix, kind)
    compare(spack, tmp_path / "out", str(prefix), [str(prefix)], {"k": "v"})


def test_non_ascii_and_long_prefix(spack: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    store = tmp_path / ("s" * 120) / "st\u00f6re"
    prefix = store / "linux" / "pk\u00e9-1.0-abc"
    prefix.mkdir(parents=True)
    make_tree(prefix, store)
    compare(
        spack,
        tmp_path / "out",
        str(prefix),
        [str(prefix), str(store)],
        buildinfo_for(store, prefix),
    )


def test_empty_and_tiny_prefixes(spack: tuple[ModuleType, ModuleType], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    compare(spack, tmp_path / "o1", str(empty), [str(empty)], {})
    tiny = tmp_path / "t"
    write(tiny / "bin" / "x", f"#!{tiny}/bin/sh\n", mode=0o755)
    compare(spack, tmp_path / "o2", str(tiny), [str(tiny)], {"k": [1, "two", {"3": None}]})


def test_non_utf8_absolute_symlink_target_fails_in_both(
    spack: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    bindist, _ = spack
    prefix = tmp_path / "p"
    prefix.mkdir()
    os.symlink(b"/opt/\xff", bpath(prefix, b"link"))
    with pytest.raises(UnicodeEncodeError):
        bindist._do_create_tarball(str(tmp_path / "spack.tar.gz"), str(prefix), {}, [])
    dest = tmp_path / "ours.tar.gz"
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        create_tarball(str(prefix), str(dest), prefixes_to_relocate=[], buildinfo={})
    assert not dest.exists()


def test_non_utf8_name_to_relocate_is_refused_where_spack_escapes_it(
    spack: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    """Known difference: Spack lists the surrogate-escaped name and its YAML dump writes it as
    ``"lib\\uDCFF.so"``; the Rust relocation lists are UTF-8 strings, so we refuse."""
    bindist, _ = spack
    prefix = tmp_path / "p"
    prefix.mkdir()
    with open(bpath(prefix, b"lib\xff.so"), "wb") as f:
        f.write(Path("/bin/true").read_bytes())
    buildinfo: dict[str, Any] = {}
    bindist._do_create_tarball(str(tmp_path / "spack.tar.gz"), str(prefix), buildinfo, [])
    assert buildinfo["relocate_binaries"] == ["lib\udcff.so"]
    dest = tmp_path / "ours.tar.gz"
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        create_tarball(str(prefix), str(dest), prefixes_to_relocate=[], buildinfo={})
    assert not dest.exists()
