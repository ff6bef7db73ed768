"""The log guard: a drain counts only if its workers stayed quiet while draining.

A worker that writes a line for every message spends its time formatting and writing log
lines, so its row measures its logging, not its framework (an earlier run measured Dramatiq
warning about every discarded return value). The harness counts the lines each drain's worker
processes wrote to stdout/stderr from the moment every one of them has run a task (or half the
tasks are done: startup banners are behind them) to the last task; a row whose workers
wrote at least one line per ``TASKS_PER_LINE`` tasks (and at least ``MIN_LINES``) is invalid:
the report says so and leaves it out of every comparison.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TASKS_PER_LINE = 20  # one line per 20 tasks or more is logging per message (or near it)
MIN_LINES = 20  # below this, a few stray lines of a short run, not per-message logs


def invalid_reason(lines: int, tasks: int) -> str:
    """Why a drain of ``tasks`` tasks during which the workers wrote ``lines`` lines is
    invalid, or "" when it is valid."""
    if lines >= max(MIN_LINES, tasks / TASKS_PER_LINE):
        return f"invalid: worker logged {lines} lines during the drain"
    return ""


def count_lines(paths: Iterable[Path]) -> int:
    """Lines written so far to the log files in ``paths`` (a missing file holds none)."""
    total = 0
    for path in paths:
        if path.exists():
            total += path.read_bytes().count(b"\n")
    return total
