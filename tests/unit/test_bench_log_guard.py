"""The benchmark's log guard without a broker: when a drain's log lines make its row invalid,
how lines are counted, and that an invalid row never enters a comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.harness import Result, rate
from benchmarks.log_guard import MIN_LINES, TASKS_PER_LINE, count_lines, invalid_reason


@pytest.mark.parametrize(
    ("lines", "tasks", "invalid"),
    [
        (0, 20_000, False),  # a quiet worker
        (16, 20_000, False),  # a few stray lines (a late banner)
        (20_000, 20_000, True),  # one warning per message (Dramatiq's discarded return value)
        (40_000, 20_000, True),  # two lines per message
        (20_000 // TASKS_PER_LINE, 20_000, True),  # exactly the threshold
        (20_000 // TASKS_PER_LINE - 1, 20_000, False),  # just under it
        (MIN_LINES - 1, 50, False),  # a tiny run: the floor keeps a few lines valid
        (MIN_LINES, 50, True),
        (50, 50, True),  # a tiny run that logs per message is still caught
    ],
)
def test_invalid_reason(lines: int, tasks: int, invalid: bool) -> None:
    reason = invalid_reason(lines, tasks)
    if invalid:
        assert reason == f"invalid: worker logged {lines} lines during the drain"
    else:
        assert reason == ""


def test_count_lines_sums_files_and_skips_missing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"one\ntwo\n")
    b.write_bytes(b"three\npartial")
    assert count_lines([a, b, tmp_path / "missing.log"]) == 3


def _drain(system: str, role: str, per_s: float, invalid: str = "") -> Result:
    row = rate(system, "drain", role, "cfg", 20_000, 20_000 / per_s, role)
    row.invalid = invalid
    return row


def test_invalid_rows_never_enter_a_comparison() -> None:
    noisy = _drain("dramatiq", "tuned", 9_000, invalid_reason(20_000, 20_000))
    quiet = _drain("dramatiq", "default", 5_000)
    ceiling = _drain("raw", "ceiling", 10_000, invalid_reason(1_000, 20_000))
    head = _drain("taskq", "headline", 18_000)
    results = [head, ceiling, quiet, noisy]
    assert report.best(results, "dramatiq", "drain") is quiet
    assert report.find(results, "raw", "drain", "ceiling") is None
    report.add_fractions(results)
    assert head.fraction_of_ceiling is None  # no valid ceiling to compare with
    assert "invalid" in report.table(results)
    assert "5,000/s (default)" in report.versus_best(results)
