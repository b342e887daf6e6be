"""Apply, check or revert our Spack patch against a Spack checkout.

    python -m spack_oci_rs.patch apply  --spack-root "$SPACK_ROOT"
    python -m spack_oci_rs.patch check  --spack-root "$SPACK_ROOT"
    python -m spack_oci_rs.patch revert --spack-root "$SPACK_ROOT"

The patches (``spack_patch/<version>.patch`` in the source tree, shipped inside this package)
are small unified diffs: one dispatch point per path plus the ``config:oci_backend`` schema
entry. They are applied by exact matching of their context, all files or none: a Spack tree
of an unknown version, one edited where the patch goes, or one already patched is refused
with a one-line reason.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PatchError", "apply", "check", "main", "patch_for", "revert", "spack_version"]

#: Spack version (``spack.__version__``) → patch file name.
PATCHES = {"1.1.0": "v1.1.0.patch", "1.2.0.dev0": "develop.patch"}


class PatchError(Exception):
    """The patch cannot be applied, checked or reverted; the message says why."""


@dataclass
class Hunk:
    old: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    path: str
    hunks: list[Hunk] = field(default_factory=list)


def _patch_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "spack_patch", here.parent.parent / "spack_patch"):
        if candidate.is_dir():
            return candidate
    raise PatchError(f"the Spack patches are missing from {here}")


def parse(text: str) -> list[FilePatch]:
    """Parse a unified diff (as ``git diff`` writes it)."""
    files: list[FilePatch] = []
    current: FilePatch | None = None
    hunk: Hunk | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith("diff --git "):
            current, hunk = None, None
        elif line.startswith("+++ "):
            path = line[4:].strip()
            path = path[2:] if path.startswith("b/") else path
            current = FilePatch(path)
            files.append(current)
        elif line.startswith("--- ") or line.startswith("index "):
            continue
        elif line.startswith("@@"):
            if current is None:
                raise PatchError("malformed patch: hunk before file header")
            hunk = Hunk()
            current.hunks.append(hunk)
        elif hunk is not None and line[:1] in (" ", "-", "+"):
            body = line[1:]
            if line[0] in (" ", "-"):
                hunk.old.append(body)
            if line[0] in (" ", "+"):
                hunk.new.append(body)
        elif line.startswith("\\"):
            continue
    return files


def _find(lines: list[str], block: list[str]) -> list[int]:
    n = len(block)
    return [i for i in range(len(lines) - n + 1) if lines[i : i + n] == block]


def _transform(lines: list[str], fp: FilePatch, reverse: bool) -> list[str]:
    out = list(lines)
    for hunk in fp.hunks:
        old, new = (hunk.new, hunk.old) if reverse else (hunk.old, hunk.new)
        where = _find(out, old)
        if len(where) != 1:
            raise PatchError(
                f"{fp.path}: the code the patch changes "
                f"{'is missing or was edited' if not where else 'is ambiguous'}"
            )
        i = where[0]
        out[i : i + len(old)] = new
    return out


def spack_version(spack_root: Path) -> str:
    """``spack.__version__`` of the checkout, read from its source."""
    init = spack_root / "lib" / "spack" / "spack" / "__init__.py"
    try:
        text = init.read_text(encoding="utf-8")
    except OSError as e:
        raise PatchError(f"{spack_root} is not a Spack checkout ({init}: {e.strerror})") from e
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise PatchError(f"cannot find the Spack version in {init}")
    return m.group(1)


def patch_for(spack_root: Path) -> list[FilePatch]:
    version = spack_version(spack_root)
    name = PATCHES.get(version)
    if name is None:
        known = ", ".join(sorted(PATCHES))
        raise PatchError(f"Spack {version} at {spack_root} is not supported (supported: {known})")
    return parse((_patch_dir() / name).read_text(encoding="utf-8"))


def _read(spack_root: Path, fp: FilePatch) -> list[str]:
    path = spack_root / fp.path
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError as e:
        raise PatchError(f"cannot read {path}: {e.strerror}") from e


def state(spack_root: Path) -> str:
    """``"patched"``, ``"unpatched"``, or raise :class:`PatchError` for anything else."""
    patches = patch_for(spack_root)
    states = set()
    for fp in patches:
        lines = _read(spack_root, fp)
        # The patched text is checked first: an insertion's context is still there after it.
        try:
            _transform(lines, fp, reverse=True)
            states.add("patched")
        except PatchError:
            try:
                _transform(lines, fp, reverse=False)
                states.add("unpatched")
            except PatchError as e:
                raise PatchError(f"{spack_root}: neither patched nor unpatched: {e}") from e
    if len(states) != 1:
        raise PatchError(f"{spack_root} is partially patched; revert it with git, then apply")
    return states.pop()


def _write_all(spack_root: Path, patches: list[FilePatch], reverse: bool) -> None:
    # Compute every file first, then write each atomically: all files or none change.
    new_contents = [(fp, _transform(_read(spack_root, fp), fp, reverse)) for fp in patches]
    for fp, lines in new_contents:
        path = spack_root / fp.path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)


def apply(spack_root: Path) -> None:
    if state(spack_root) == "patched":
        raise PatchError(f"{spack_root} is already patched")
    _write_all(spack_root, patch_for(spack_root), reverse=False)


def revert(spack_root: Path) -> None:
    if state(spack_root) == "unpatched":
        raise PatchError(f"{spack_root} is not patched")
    _write_all(spack_root, patch_for(spack_root), reverse=True)


def check(spack_root: Path) -> str:
    return state(spack_root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spack_oci_rs.patch",
        description="Apply, check or revert the spack-oci-rs patch of a Spack checkout.",
    )
    parser.add_argument("action", choices=["apply", "check", "revert"])
    parser.add_argument(
        "--spack-root",
        default=os.environ.get("SPACK_ROOT"),
        help="the Spack checkout (default: $SPACK_ROOT)",
    )
    args = parser.parse_args(argv)
    if not args.spack_root:
        parser.error("--spack-root is required when SPACK_ROOT is not set")
    root = Path(args.spack_root)
    try:
        if args.action == "apply":
            apply(root)
            print(f"patched Spack {spack_version(root)} at {root}")
            print("enable it with: spack config add config:oci_backend:rust")
        elif args.action == "revert":
            revert(root)
            print(f"reverted the patch of Spack {spack_version(root)} at {root}")
        else:
            print(f"Spack {spack_version(root)} at {root}: {check(root)}")
    except PatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
