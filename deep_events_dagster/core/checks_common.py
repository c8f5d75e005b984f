"""What the ingestion checks share: how many problems a result lists and how counts are worded."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MAX_LISTED", "file_name", "plural"]

MAX_LISTED = 20
"""At most this many problems are listed in a result (counts always cover everything)."""


def plural(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 point"``, ``"3 points"``: a count with its noun (``plural`` when not noun + s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def file_name(file: str | Path) -> str:
    """The file's name without its folder, as results list it."""
    return Path(file).name
