"""``bench/RESULTS.md``: where the benchmarks' tables are appended, one dated section each."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def report(text: str, *, record: bool) -> None:
    """Print ``text`` (a section with its heading) and, with ``record``, append it to
    ``RESULTS.md``."""
    print(text)
    if record:
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write("\n" + text.rstrip("\n") + "\n")
