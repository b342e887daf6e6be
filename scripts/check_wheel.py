"""Check release wheels: abi3, a manylinux tag no newer than --max-glibc, ELF files that need
no GLIBC_ symbol version above it (readelf, from binutils), and `auditwheel show` agreeing.

    python scripts/check_wheel.py --max-glibc 2.17 dist/*.whl
    python scripts/check_wheel.py --max-glibc 2.17 --elf path/to/_native.abi3.so

Exit 0 when every file passes, 1 with one line per problem on stderr otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

Version = tuple[int, ...]

#: `readelf -V` lines of the version-needs section: "0x0010:   Name: GLIBC_2.17  Flags: ..."
_NEED = re.compile(r"Name: GLIBC_([0-9][0-9.]*)\b")
#: manylinux_2_17_x86_64 (PEP 600) or the manylinux2014/2010/1 aliases (PEP 599/571/513)
_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)|manylinux(2014|2010|1)_(\w+)")
_ALIASES = {"2014": (2, 17), "2010": (2, 12), "1": (2, 5)}


def parse_version(text: str) -> Version:
    """'2.17' -> (2, 17); a clear error for anything else."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        raise ValueError(f"not a glibc version: {text!r} (expected e.g. 2.17)") from None


def show(version: Version) -> str:
    return ".".join(map(str, version))


def glibc_needs(elf: Path) -> set[Version]:
    """The GLIBC_ symbol versions that `elf` needs (its .gnu.version_r section)."""
    out = subprocess.run(
        ["readelf", "--version-info", "--wide", str(elf)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise ValueError(f"{elf}: readelf failed: {out.stderr.strip()}")
    needs: set[Version] = set()
    in_needs = False
    for line in out.stdout.splitlines():
        if line.startswith("Version"):  # a section header: "Version needs section '.gnu..."
            in_needs = line.startswith("Version needs section")
        elif in_needs and (m := _NEED.search(line)):
            needs.add(parse_version(m.group(1)))
    return needs


def check_elf(elf: Path, max_glibc: Version, name: str | None = None) -> list[str]:
    """Problems of one ELF file: each needed GLIBC_ version above `max_glibc`."""
    needs = glibc_needs(elf)
    label = name or str(elf)
    print(f"{label}: newest GLIBC_ version needed: {show(max(needs)) if needs else 'none'}")
    too_new = sorted(v for v in needs if v > max_glibc)
    return [f"{label}: needs GLIBC_{show(v)} (above {show(max_glibc)})" for v in too_new]


def platform_glibc(tag: str) -> tuple[Version, str] | None:
    """manylinux_2_17_x86_64 or manylinux2014_x86_64 -> ((2, 17), 'x86_64'); else None."""
    m = _MANYLINUX.fullmatch(tag)
    if m is None:
        return None
    if m.group(1):
        return (int(m.group(1)), int(m.group(2))), m.group(3)
    return _ALIASES[m.group(4)], m.group(5)


def check_tags(wheel: Path, max_glibc: Version) -> list[str]:
    """Problems of the wheel's file name: abi3 and manylinux tags no newer than `max_glibc`."""
    parts = wheel.name.removesuffix(".whl").split("-")
    if len(parts) < 5 or not wheel.name.endswith(".whl"):
        return [f"{wheel.name}: not a wheel file name (name-version-python-abi-platform.whl)"]
    abi, platforms = parts[-2], parts[-1].split(".")
    problems = [] if abi == "abi3" else [f"{wheel.name}: ABI tag {abi!r}, expected 'abi3'"]
    for plat in platforms:
        parsed = platform_glibc(plat)
        if parsed is None:
            problems.append(f"{wheel.name}: platform tag {plat!r} is not a manylinux tag")
        elif parsed[0] > max_glibc:
            problems.append(f"{wheel.name}: platform tag {plat!r} is above {show(max_glibc)}")
    return problems


def check_auditwheel(wheel: Path, max_glibc: Version) -> list[str]:
    """`auditwheel show`: it must run and find the wheel consistent with `max_glibc` or older."""
    exe = shutil.which("auditwheel")
    if exe is None:
        return [f"{wheel.name}: auditwheel is not on PATH (pip install auditwheel)"]
    out = subprocess.run([exe, "show", str(wheel)], capture_output=True, text=True, check=False)
    text = " ".join((out.stdout + out.stderr).split())
    m = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    if out.returncode != 0 or m is None:
        return [f"{wheel.name}: auditwheel show failed: {text[:400]}"]
    parsed = platform_glibc(m.group(1))
    if parsed is None or parsed[0] > max_glibc:
        return [f"{wheel.name}: auditwheel says {m.group(1)!r}, above {show(max_glibc)}"]
    print(f"{wheel.name}: auditwheel: consistent with {m.group(1)}")
    return []


def check_wheel(wheel: Path, max_glibc: Version, auditwheel: bool = True) -> list[str]:
    """Every problem of one wheel: its tags, each shared object in it, auditwheel's verdict."""
    problems = check_tags(wheel, max_glibc)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        objects = [n for n in zf.namelist() if n.endswith(".so") or ".so." in n]
        if not objects:
            problems.append(f"{wheel.name}: no shared object in the wheel")
        for member in objects:
            elf = Path(zf.extract(member, tmp))
            problems += check_elf(elf, max_glibc, name=f"{wheel.name}:{member}")
    if auditwheel:
        problems += check_auditwheel(wheel, max_glibc)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="wheels (or ELF files with --elf)")
    parser.add_argument("--max-glibc", default="2.17", help="newest glibc allowed (2.17)")
    parser.add_argument("--elf", action="store_true", help="the files are ELF files, not wheels")
    parser.add_argument("--no-auditwheel", action="store_true", help="skip `auditwheel show`")
    args = parser.parse_args(argv)
    try:
        max_glibc = parse_version(args.max_glibc)
    except ValueError as err:
        parser.error(str(err))
    problems: list[str] = []
    for path in args.files:
        if not path.is_file():
            problems.append(f"{path}: no such file")
        elif args.elf:
            problems += check_elf(path, max_glibc)
        else:
            problems += check_wheel(path, max_glibc, auditwheel=not args.no_auditwheel)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: {len(args.files)} file(s), nothing needs glibc above {show(max_glibc)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
