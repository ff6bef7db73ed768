"""The dashboard's per-task statistics: runtime bins and percentiles, minute buckets, their
storage in the history file (across batches and a reopen), series, and their retention."""

from __future__ import annotations

import contextlib
import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from taskq.dashboard import history as history_module
from taskq.dashboard import stats
from taskq.dashboard.history import History


def ended(kind: str, at: float, runtime: float | None = 0.01, task: str = "add") -> dict[str, Any]:
    return {"type": f"task.{kind}", "task_id": f"{task}-{at}-{random.random()}", "time": at,
            "task": task, "queue": "default", "attempt": 1, "runtime": runtime}  # fmt: skip


def exact(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("q", [0.01, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_a_percentile_from_the_bins_is_within_a_bins_precision(q: float) -> None:
    draw = random.Random(f"stats-{q}")
    # Runtimes from 10 µs to minutes, most around 20 ms, and a few repeated values.
    runtimes = [draw.lognormvariate(math.log(0.02), 2.0) for _ in range(5000)]
    runtimes += [0.25] * 300 + [1e-5, 120.0]
    bucket = stats.Bucket()
    for runtime in runtimes:
        bucket.count("succeeded", runtime)
    found = stats.percentile(bucket.bins, q)
    assert found is not None
    assert abs(found - exact(runtimes, q)) <= stats.PRECISION * exact(runtimes, q)
    assert stats.PRECISION < 0.045


def test_every_runtime_falls_in_a_bin_whose_middle_is_within_the_precision() -> None:
    value = 2e-6
    while value < 86_000:
        middle = stats.bin_value(stats.bin_of(value))
        assert abs(middle - value) <= stats.PRECISION * value * (1 + 1e-9), value
        value *= 1.013
    assert stats.bin_of(0.0) == stats.bin_of(-1.0) == stats.bin_of(float("nan")) == 0
    assert stats.bin_of(10 * 86400) == stats.LAST_BIN  # a run over a day counts as a day
    assert stats.percentile({}, 0.5) is None


def test_runs_are_counted_in_the_minute_they_ended() -> None:
    folded = stats.fold([
        ended("succeeded", 119.999, 0.010),
        ended("failed", 120.0, 0.020),
        ended("retried", 179.9, 0.030),
        ended("succeeded", 180.0, None),  # no runtime: counted, not in the runtimes
        ended("succeeded", 100.0, 0.5, task="other"),
        {**ended("started", 150.0), "runtime": None},  # not an end
        {"type": "task.succeeded", "time": 150.0, "runtime": 0.1},  # no task name
        {**ended("succeeded", 0.0), "time": "soon"},  # another producer's: not a time
        ended("succeeded", float("inf")),
    ])  # fmt: skip
    assert sorted(folded) == [("add", 60), ("add", 120), ("add", 180), ("other", 60)]
    first, second, third = folded["add", 60], folded["add", 120], folded["add", 180]
    assert (first.succeeded, first.finished, sum(first.bins.values())) == (1, 1, 1)
    assert (second.failed, second.retried, second.finished) == (1, 1, 1)  # retried: not finished
    assert sum(second.bins.values()) == 2  # the retried attempt's runtime counts
    assert (third.finished, sum(third.bins.values())) == (1, 0)
    assert second.as_json()["failure_pct"] == 100.0


def test_buckets_merge_across_batches_and_stay_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as old:  # a file of an older dashboard
        old.executescript(history_module.SCHEMA)
    history = History(path, max_age=86400, max_tasks=100)
    history.write([ended("succeeded", 600.0, 0.010), ended("failed", 610.0, 0.400)])
    history.write([ended("succeeded", 659.0, 0.010), ended("succeeded", 660.0, 0.020)])
    history.close()

    reopened = History(path, max_age=86400, max_tasks=100)
    rows = reopened.task_stats(600.0, 700.0, "add")
    assert [(start, b.succeeded, b.failed) for _, start, b in rows] == [(600, 2, 1), (660, 1, 0)]
    (summary,) = stats.listing(rows, [], 700.0)
    assert (summary["finished"], summary["failed"], summary["failure_pct"]) == (4, 1, 25.0)
    assert summary["p50_ms"] == pytest.approx(10.0, rel=stats.PRECISION)
    assert summary["p95_ms"] == pytest.approx(400.0, rel=stats.PRECISION)
    assert reopened.task_stats(600.0, 700.0, "nothing") == []
    reopened.close()


def test_a_series_has_a_point_per_step_with_gaps_where_nothing_ran() -> None:
    rows = [(name, start, bucket) for (name, start), bucket in stats.fold([
        ended("succeeded", 60.0, 0.010), ended("failed", 130.0, 0.030),
        ended("succeeded", 300.0, 0.010),
    ]).items()]  # fmt: skip
    by_minute = stats.series(rows, 60.0, 300.0, 60)
    assert by_minute["time"] == [60, 120, 180, 240, 300]
    assert by_minute["finished"] == [1, 1, 0, 0, 1]
    assert by_minute["failure_pct"] == [0.0, 100.0, None, None, 0.0]
    assert by_minute["p50_ms"][2:4] == [None, None]
    assert by_minute["rate"][0] == round(1 / 60, 3)
    by_two = stats.series(rows, 60.0, 300.0, 120)  # steps merge minutes exactly
    assert by_two["time"] == [0, 120, 240]
    assert (by_two["finished"], by_two["failed"]) == ([1, 1, 1], [0, 1, 0])


def test_a_step_is_whole_minutes_and_a_series_stays_small() -> None:
    assert stats.step_for(0, 3600) == 60
    assert stats.step_for(0, 86400) == 240
    assert stats.step_for(0, 7 * 86400) == 1680  # 360 points
    assert stats.step_for(0, 3600, asked=90) == 120
    assert stats.step_for(0, 7 * 86400, asked=1) == 60  # a week of minutes, no finer


def test_now_figures_cover_the_last_five_minutes() -> None:
    now = 10_000.0
    recent = [("add", stats.bucket_of(now), stats.fold([ended("succeeded", now - 1)])["add",
              stats.bucket_of(now)])]  # fmt: skip
    listed = stats.listing([], recent, now, ["idle"])
    assert [t["task"] for t in listed] == ["add", "idle"]
    elapsed = now - stats.recent_since(now)
    assert stats.RECENT <= elapsed <= stats.RECENT + stats.BUCKET
    assert listed[0]["now"]["rate"] == round(1 / elapsed, 3)
    assert listed[1]["now"]["rate"] == 0.0 and listed[1]["finished"] == 0


def test_statistics_are_pruned_by_age_and_by_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=86400, max_tasks=100)
    now = 100 * 86400.0
    old = now - stats.MAX_AGE - 60
    history.write([ended("succeeded", old), ended("succeeded", now - 60)])
    history.prune(now)
    assert [start for _, start, _ in history.task_stats(0, now)] == [stats.bucket_of(now - 60)]

    monkeypatch.setattr(stats, "MAX_ROWS", 3)
    history.write([ended("succeeded", now - 60 * m) for m in range(2, 6)])  # five minutes now
    history.prune(now)
    kept = [start for _, start, _ in history.task_stats(0, now)]
    assert kept == [stats.bucket_of(now - 60 * m) for m in (3, 2, 1)]  # the newest three
    history.close()
