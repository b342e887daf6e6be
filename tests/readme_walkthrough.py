"""The README's walkthrough for Spack users, read from README.md: its fenced blocks marked
``<!-- walkthrough:NAME -->`` (tests/test_readme.py runs them, tests/test_docs_ci.py compares
docs/ci.md with them)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough(name: str, text: str | None = None) -> str:
    """The fenced block after ``<!-- walkthrough:NAME -->`` in the README."""
    text = README.read_text() if text is None else text
    m = re.search(rf"<!-- walkthrough:{re.escape(name)} -->\s*```\w*\n(.*?)```", text, re.S)
    assert m, f"README.md has no walkthrough:{name} block"
    return m.group(1)


def shell_lines(text: str | None = None) -> list[str]:
    """The commands of the walkthrough (its ``$ `` lines, without the prompt)."""
    return [line[2:] for line in walkthrough("shell", text).splitlines() if line.startswith("$ ")]
