"""The one Markdown table writer used by every report and benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_cell(value: Any, digits: int = 4) -> str:
    """Floats with `digits` decimals, None as an en dash, everything else as `str`."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; cells go through `format_cell` (pre-format a cell to control it)."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells ({', '.join(headers)})")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
