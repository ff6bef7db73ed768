"""Per-task statistics: how many runs of each task name ended, how many failed, and how long
they ran (p50, p95), per minute, kept in the history file across restarts.

Events (``task.succeeded``, ``task.failed``, ``task.retried``) are folded per task name and
per one-minute bucket (:data:`BUCKET`, by the time of the event, UTC minutes) into a
:class:`Bucket`: counts, and a histogram of the runtimes with fixed log-scale bins
(:func:`bin_of`: eight a doubling, so a percentile read from the bins is within
:data:`PRECISION` of the exact one). Folding costs a dict lookup and a ``log2`` per event; a
batch then merges into the stored rows (one read and one write per task name and minute, not
per event). Histograms add up exactly, so a chart's coarser step (an hour of minutes) and a
table's window merge buckets without losing the percentiles' precision.

*Finished* counts the tasks that reached their end (succeeded, or failed for good); a failed
attempt that will run again counts as *retried*. The runtimes are those of every run that
ended (the retried attempts too: each is a run of the task's function).

Bounded by its own retention (:func:`prune`): buckets older than :data:`MAX_AGE` (7 days)
go, and beyond :data:`MAX_ROWS` rows (task names times minutes) the oldest minutes go first.

Blocking: :func:`store`, :func:`prune` and :func:`read` run SQL on the connection they are
given (the History's, under its lock); the rest is pure.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

BUCKET = 60
"""Seconds a bucket covers: a minute shows a spike, and a day is 1,440 points a task."""
MAX_AGE = 7 * 86400.0
MAX_ROWS = 200_000  # about 300 bytes a row: some 60 MB at most
BINS_PER_OCTAVE = 8
SMALLEST = 1e-6
"""Seconds: the lower edge of bin 1; bin 0 holds the shorter runtimes."""
LAST_BIN = math.ceil(math.log2(86400 / SMALLEST) * BINS_PER_OCTAVE)
"""Runtimes over a day count in this bin (as about a day)."""
PRECISION = 2 ** (1 / (2 * BINS_PER_OCTAVE)) - 1
"""The relative error of a percentile read from the bins (4.4 %): a bin's middle is this far
from its edges."""
RECENT = 300
"""Seconds of the *now* figures: the last five minutes."""
MAX_POINTS = 360
"""Points of a series when no step is asked: a week is then one point each 28 minutes."""
MAX_TASKS = 200  # task names a listing shows, at most

SERIES = ("time", "finished", "failed", "rate", "failure_pct", "p50_ms", "p95_ms")
ENDS = {"task.succeeded": "succeeded", "task.failed": "failed", "task.retried": "retried"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS task_stats (
    name TEXT NOT NULL, bucket INTEGER NOT NULL, succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL, retried INTEGER NOT NULL, bins TEXT NOT NULL,
    PRIMARY KEY (name, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_stats_bucket ON task_stats (bucket);
"""


def bin_of(runtime: float) -> int:
    """The histogram bin of ``runtime`` seconds: bin ``i >= 1`` holds
    ``[SMALLEST * 2**((i-1)/8), SMALLEST * 2**(i/8))``."""
    if not runtime >= SMALLEST:  # NaN too
        return 0
    return min(LAST_BIN, 1 + int(math.log2(runtime / SMALLEST) * BINS_PER_OCTAVE))


def bin_value(index: int) -> float:
    """The runtime a bin stands for: its geometric middle (bin 0: half of SMALLEST)."""
    if index <= 0:
        return SMALLEST / 2
    return float(SMALLEST * 2 ** ((index - 0.5) / BINS_PER_OCTAVE))


def percentile(bins: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1, nearest rank) of the runtimes counted in ``bins``, in
    seconds, within :data:`PRECISION` of the exact one; None if there is none."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(bins))  # not reached: the counts add up to total


@dataclasses.dataclass(slots=True)
class Bucket:
    """What ended in one minute (or several, merged) for one task name."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    bins: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)

    @property
    def finished(self) -> int:
        """Tasks that reached their end: succeeded, or failed for good."""
        return self.succeeded + self.failed

    def count(self, end: str, runtime: Any) -> None:
        """One run that ended as ``end`` (``succeeded``, ``failed``, ``retried``)."""
        setattr(self, end, getattr(self, end) + 1)
        if isinstance(runtime, int | float):
            self.bins[bin_of(float(runtime))] += 1

    def add(self, other: Bucket) -> None:
        """Merge ``other`` into this one (exact: counts and bins add up)."""
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        self.bins.update(other.bins)

    def as_json(self) -> dict[str, Any]:
        """Counts, failure % of the finished, and the runtime p50 and p95 in ms."""
        finished = self.finished
        return {
            "finished": finished, "succeeded": self.succeeded, "failed": self.failed,
            "retried": self.retried,
            "failure_pct": round(100 * self.failed / finished, 2) if finished else None,
            "p50_ms": _ms(percentile(self.bins, 0.5)), "p95_ms": _ms(percentile(self.bins, 0.95)),
        }  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def bucket_of(moment: float) -> int:
    """The start of the bucket that holds ``moment`` (a Unix time)."""
    return int(moment // BUCKET) * BUCKET


def fold(events: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], Bucket]:
    """The runs that ended in ``events``, per (task name, bucket); other events are ignored."""
    buckets: dict[tuple[str, int], Bucket] = {}
    for event in events:
        end = ENDS.get(event.get("type") or "")
        name = event.get("task")
        when = _time_of(event)
        if end is None or not isinstance(name, str) or not name or when is None:
            continue
        key = (name, bucket_of(when))
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = Bucket()
        bucket.count(end, event.get("runtime"))
    return buckets


def _time_of(event: Mapping[str, Any]) -> float | None:
    """An event's time (now if it has none); None if it is not a time (another producer's)."""
    try:
        when = float(event.get("time") or time.time())
    except (TypeError, ValueError):
        return None
    return when if math.isfinite(when) else None


def _of_row(row: Any) -> Bucket:
    bins = collections.Counter({int(i): int(n) for i, n in json.loads(row["bins"])})
    return Bucket(row["succeeded"], row["failed"], row["retried"], bins)


_STORED = "SELECT succeeded, failed, retried, bins FROM task_stats WHERE name = ? AND bucket = ?"


def store(db: sqlite3.Connection, buckets: Mapping[tuple[str, int], Bucket]) -> None:
    """Merge ``buckets`` into the stored ones (call it inside the batch's transaction)."""
    for (name, start), bucket in buckets.items():
        row = db.execute(_STORED, (name, start)).fetchone()
        merged = Bucket(bucket.succeeded, bucket.failed, bucket.retried, bucket.bins.copy())
        if row is not None:
            merged.add(_of_row(row))
        bins = json.dumps(sorted(merged.bins.items()), separators=(",", ":"))
        values = (name, start, merged.succeeded, merged.failed, merged.retried, bins)
        db.execute("INSERT OR REPLACE INTO task_stats VALUES (?, ?, ?, ?, ?, ?)", values)


def prune(db: sqlite3.Connection, now: float) -> int:
    """Drop the buckets older than MAX_AGE, and the oldest beyond MAX_ROWS; how many went."""
    with db:
        db.execute("BEGIN")
        dropped = db.execute("DELETE FROM task_stats WHERE bucket < ?", (now - MAX_AGE,)).rowcount
        nth = db.execute("SELECT bucket FROM task_stats ORDER BY bucket DESC LIMIT 1 OFFSET ?",
                         (MAX_ROWS,)).fetchone()  # fmt: skip
        if nth is not None:  # whole minutes go: the row cap is reached at a minute's edge
            dropped += db.execute("DELETE FROM task_stats WHERE bucket <= ?", (nth[0],)).rowcount
    return int(dropped)


Rows = list[tuple[str, int, Bucket]]


def read(db: sqlite3.Connection, since: float, until: float, name: str | None = None) -> Rows:
    """The stored buckets from ``since`` to ``until`` (the one holding ``since`` too), of
    task ``name`` or of every task, by name and time."""
    where = "bucket >= ? AND bucket <= ?"
    params: list[Any] = [bucket_of(since), until]
    if name is not None:
        where += " AND name = ?"
        params.append(name)
    rows = db.execute(f"SELECT * FROM task_stats WHERE {where} ORDER BY name, bucket", params)
    return [(row["name"], row["bucket"], _of_row(row)) for row in rows]


def totals(rows: Rows) -> dict[str, Bucket]:
    """Each task name's buckets merged into one."""
    merged: dict[str, Bucket] = {}
    for name, _, bucket in rows:
        merged.setdefault(name, Bucket()).add(bucket)
    return merged


def step_for(since: float, until: float, asked: float | None = None) -> int:
    """The step of a series from ``since`` to ``until``: ``asked`` (rounded to whole buckets),
    or one that makes at most MAX_POINTS points; never finer than one bucket, nor than
    MAX_POINTS * 28 points (a week of minutes)."""
    span = max(until - since, BUCKET)
    finest = math.ceil(span / (MAX_POINTS * 28) / BUCKET) * BUCKET
    wanted = asked if asked else span / MAX_POINTS
    return int(max(BUCKET, finest, math.ceil(wanted / BUCKET) * BUCKET))


def series(rows: Rows, since: float, until: float, step: int) -> dict[str, list[Any]]:
    """One task's buckets as a chart's series, one point per ``step`` seconds from the step
    holding ``since`` to the one holding ``until``: the step's start, finished and failed
    tasks, rate (finished per second), failure %, runtime p50 and p95 in ms. A step with no
    run has counts 0 and no failure % or runtimes (None)."""
    first, last = int(since // step) * step, int(until // step) * step
    steps = {start: Bucket() for start in range(first, last + 1, step)}
    for _, start, bucket in rows:
        slot = steps.get(int(start // step) * step)
        if slot is not None:
            slot.add(bucket)
    out: dict[str, list[Any]] = {key: [] for key in SERIES}
    for start, bucket in steps.items():
        summary = bucket.as_json()
        out["time"].append(start)
        out["rate"].append(round(bucket.finished / step, 3))
        for key in ("finished", "failed", "failure_pct", "p50_ms", "p95_ms"):
            out[key].append(summary[key])
    return out


def listing(
    rows: Rows, recent: Rows, now: float, names: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """One summary per task name (by name, at most MAX_TASKS; ``names`` are listed even
    without a run): the counts, failure % and runtimes of ``rows`` (a range), and under
    ``now`` those of ``recent`` (the rows since :func:`recent_since`) with their ``rate``,
    finished tasks per second."""
    in_range, lately = totals(rows), totals(recent)
    elapsed = max(1.0, now - recent_since(now))
    out = []
    for name in sorted({*in_range, *lately, *names})[:MAX_TASKS]:
        latest = lately.get(name, Bucket())
        now_json = {**latest.as_json(), "rate": round(latest.finished / elapsed, 3)}
        out.append({"task": name, **in_range.get(name, Bucket()).as_json(), "now": now_json})
    return out


def recent_since(now: float) -> int:
    """Where the *now* figures start: the bucket that began RECENT seconds before the
    current one (so they cover RECENT seconds and the current minute so far)."""
    return bucket_of(now) - RECENT
