"""Aligned-column tables for the terminal, and the small formatters the commands share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table: a header line, then one line per row; numbers right-aligned, the rest left.

    ``None`` shows as ``-``. The last column is not padded (long text may follow it).
    """
    table = [list(row) for row in rows]
    cells = [[_cell(v) for v in row] for row in table]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = [_line(list(headers), widths, [False] * len(headers))]
    for raw, row in zip(table, cells, strict=True):
        lines.append(_line(row, widths, [_numeric(v) for v in raw]))
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int], right: list[bool]) -> str:
    parts = []
    last = len(cells) - 1
    for i, text in enumerate(cells):
        if right[i]:
            parts.append(text.rjust(widths[i]))
        elif i == last:
            parts.append(text)
        else:
            parts.append(text.ljust(widths[i]))
    return "  ".join(parts).rstrip()


def duration(seconds: float | None) -> str | None:
    """``0.8 ms``, ``1.25 s``, ``3m05s``, ``2h03m``, ``4d02h``."""
    if seconds is None:
        return None
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def clock(timestamp: float | str | None) -> str | None:
    """A UTC timestamp (epoch seconds or ISO text) as ``YYYY-mm-dd HH:MM:SS``."""
    if timestamp is None:
        return None
    if isinstance(timestamp, str):
        try:
            when = dt.datetime.fromisoformat(timestamp)
        except ValueError:
            return timestamp
    else:
        when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
