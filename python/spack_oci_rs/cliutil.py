"""How every ``spack-oci-rs`` subcommand behaves as a Unix tool.

- stdout carries data only (text or ``--json``); errors and progress go to stderr;
- exit codes: 0 done, 1 failed, 2 usage (unknown option, bad option value, a mirror that
  does not exist), 3 partial (some items of a batch failed), 141 stdout closed (``| head``,
  quietly, like a process killed by SIGPIPE), 130 interrupted;
- never a traceback: an unexpected exception is one ``error: internal error: ...`` line;
- with ``--json`` a failure is also one JSON object with an ``error`` key on stdout;
- references may name Spack mirrors: ``--mirror NAME`` (the positional is then a tag of it),
  or a bare word equal to a configured mirror's name (said on stderr).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from . import spack_mirrors
from ._native import parse_reference
from .exceptions import OciError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_PIPE, EXIT_INTERRUPTED = 141, 130


class UsageError(Exception):
    """A mistake in the command line found before any request (exit 2)."""


class Failure(Exception):
    """A failure that is not the engine's (exit 1)."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def batch_exit(failed: int, total: int) -> int:
    """0 when nothing failed, 3 when some did, 1 when all did."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if failed < total else EXIT_FAIL


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _report(args: argparse.Namespace, kind: str, message: str, status: int | None) -> None:
    if getattr(args, "json", False):
        print(json.dumps({"error": kind, "message": message, "status": status}))
    print(f"error: {message}", file=sys.stderr)


@functools.cache
def _spack_mirrors() -> dict[str, spack_mirrors.Mirror]:
    return spack_mirrors.mirrors()


def mirror(name: str) -> spack_mirrors.Mirror:
    """The Spack mirror ``name`` (an OCI one), or a usage error."""
    try:
        found = _spack_mirrors().get(name)
    except spack_mirrors.MirrorError as e:
        raise UsageError(f"--mirror {name}: {e}") from None
    if found is None:
        known = ", ".join(sorted(_spack_mirrors())) or "none"
        raise UsageError(f"--mirror {name}: Spack has no such mirror (configured: {known})")
    if not found.is_oci:
        raise UsageError(f"--mirror {name}: {found.url} is not an OCI mirror (oci://...)")
    return found


def _looks_bare(word: str) -> bool:
    return "/" not in word and "@" not in word and bool(word)


def resolve(args: argparse.Namespace, word: str | None) -> tuple[str, spack_mirrors.Mirror | None]:
    """The reference ``word`` stands for, and the Spack mirror it came from if any.

    With ``--mirror NAME``, ``word`` is a tag (or ``@digest``) of that mirror, or None for
    the mirror itself. Else a bare word (``rs`` or ``rs:tag``) whose name is a configured
    OCI mirror of the Spack on PATH is that mirror; any other word is a reference.
    """
    name = getattr(args, "mirror", None)
    if name:
        m = mirror(name)
        suffix = "" if not word else (word if word.startswith("@") else f":{word}")
        return m.url + suffix, m
    if word is None:
        raise UsageError("a registry reference (or --mirror NAME) is needed")
    if not _looks_bare(word):
        return word, None
    base, _, tag = word.partition(":")
    named = None
    if spack_mirrors.find_spack():
        try:
            named = _spack_mirrors().get(base)
        except spack_mirrors.MirrorError:
            named = None
    if named is not None and named.is_oci:
        print(f"note: {base!r} is the Spack mirror {base} ({named.url})", file=sys.stderr)
        return named.url + (f":{tag}" if tag else ""), named
    try:
        parsed = parse_reference(word)
    except OciError:
        return word, None  # the caller reports the bad reference
    print(
        f"note: {base!r} is no Spack mirror: read as {parsed['domain']}/{parsed['name']}",
        file=sys.stderr,
    )
    return word, None


def run(args: argparse.Namespace, func: Callable[[argparse.Namespace], int]) -> int:
    """Run a subcommand under the conventions above."""
    try:
        code = int(func(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): no message, and no second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except UsageError as e:
        _report(args, "UsageError", str(e), None)
        return EXIT_USAGE
    except OciError as e:
        _report(args, type(e).__name__, str(e), e.status)
        return EXIT_FAIL
    except Failure as e:
        _report(args, "Failure", str(e), None)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        _report(args, type(e).__name__, str(e), None)
        return EXIT_FAIL
    except Exception as e:  # the promise is: never a traceback
        _report(args, "InternalError", f"internal error: {type(e).__name__}: {e}", None)
        return EXIT_FAIL
