"""A task's traceback as text, cheaply: the standard format without the caret lines.

``traceback.format_exception`` costs a few hundred microseconds on Python 3.11+: it finds
every frame's column positions and parses each source line (``ast.parse``) to draw the
``^^^^`` marks under it. A worker formats the traceback of every failed attempt; in a retry
storm of thousands of failures that was nearly half of its time. Here each frame's lines
are formatted once per code location (its code object and instruction) and reused; the
text is the standard one, caret lines aside.
"""

from __future__ import annotations

import linecache
import traceback
from types import CodeType, TracebackType

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"
_HEADER = "Traceback (most recent call last):\n"
_REPEATS_SHOWN = 3  # as the standard library: identical lines beyond these are counted
_CACHE_LIMIT = 4096

_frames: dict[tuple[CodeType, int], tuple[str, tuple[str, int, str]]] = {}


def format_exception(exc: BaseException) -> str:
    """``exc`` with its traceback and the exceptions it was raised from or during, in the
    standard format without the caret lines (an exception group: the standard format)."""
    if isinstance(exc, BaseExceptionGroup):
        return "".join(traceback.format_exception(exc))
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(link)
        parts.append(_one(current))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
        if isinstance(current, BaseExceptionGroup):  # its own format, as the standard's
            parts.append(link)
            parts.append("".join(traceback.format_exception(current)))
            break
    return "".join(reversed(parts))


def _one(exc: BaseException) -> str:
    """One exception: its frames (if it has a traceback) and its type and message."""
    text = "".join(traceback.format_exception_only(type(exc), exc))
    if exc.__traceback__ is None:
        return text
    return _HEADER + _stack(exc.__traceback__) + text


def _stack(tb: TracebackType | None) -> str:
    lines: list[str] = []
    last: tuple[str, int, str] | None = None
    repeats = 0
    while tb is not None:
        text, where = _frame(tb)
        if where == last:
            repeats += 1
        else:
            _count_repeats(lines, repeats)
            last, repeats = where, 1
        if repeats <= _REPEATS_SHOWN:
            lines.append(text)
        tb = tb.tb_next
    _count_repeats(lines, repeats)
    return "".join(lines)


def _count_repeats(lines: list[str], repeats: int) -> None:
    hidden = repeats - _REPEATS_SHOWN
    if hidden > 0:
        plural = "s" if hidden > 1 else ""
        lines.append(f"  [Previous line repeated {hidden} more time{plural}]\n")


def _frame(tb: TracebackType) -> tuple[str, tuple[str, int, str]]:
    """A frame's two lines (where, and its source line if found), formatted once per code
    location; and where it is, to count repeats (recursion)."""
    code = tb.tb_frame.f_code
    key = (code, tb.tb_lasti)
    found = _frames.get(key)
    if found is not None:
        return found
    where = (code.co_filename, tb.tb_lineno, code.co_name)
    text = f'  File "{where[0]}", line {where[1]}, in {where[2]}\n'
    source = linecache.getline(where[0], where[1], tb.tb_frame.f_globals).strip()
    if source:
        text += f"    {source}\n"
    if len(_frames) >= _CACHE_LIMIT:
        _frames.clear()
    _frames[key] = (text, where)
    return text, where
