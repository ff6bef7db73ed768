"""What the dashboard's per-task statistics cost (taskq.dashboard.stats), in-process.

    python -m benchmarks.dashboard_stats [--rate 2000] [--seconds 30] [--names 10]

Builds the events that workers with ``--events`` and senders with ``events=True`` publish for
``--rate`` tasks/s over ``--seconds`` (sent, received, started, then succeeded, or failed for
5 %: 4 events a task, with lognormal runtimes, spread over ``--names`` task names), cut in the
batches the dashboard writes (one per 0.5 s), and times, per batch: folding the events into
minute buckets (``stats.fold``), merging the buckets into the history file (``stats.store``),
and the whole ``History.write`` the dashboard does (task rows, timeline, statistics). Prints
events/s and the share of one core the statistics take at ``--rate``.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from taskq.dashboard import stats
from taskq.dashboard.history import History

BATCH = 0.5  # seconds: the dashboard's WRITE_INTERVAL


def events(rate: int, seconds: int, names: int) -> list[list[dict[str, Any]]]:
    """The batches of events of ``rate`` tasks/s for ``seconds``."""
    draw = random.Random(26)
    start = 1_800_000_000.0
    batches: list[list[dict[str, Any]]] = []
    per_batch = int(rate * BATCH)
    for b in range(int(seconds / BATCH)):
        batch = []
        for n in range(per_batch):
            at = start + b * BATCH + n / rate
            task_id = f"{b}-{n}"
            name = f"task_{draw.randrange(names)}"
            common = {"task_id": task_id, "task": name, "queue": "default", "attempt": 1}
            end = "task.failed" if draw.random() < 0.05 else "task.succeeded"
            runtime = draw.lognormvariate(-4.0, 1.0)
            batch += [
                {**common, "type": "task.sent", "time": at, "args": "1, 2"},
                {**common, "type": "task.received", "time": at + 0.001},
                {**common, "type": "task.started", "time": at + 0.002, "worker": "w1"},
                {**common, "type": end, "time": at + 0.002 + runtime, "runtime": runtime},
            ]
        batches.append(batch)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--names", type=int, default=10)
    args = parser.parse_args()
    batches = events(args.rate, args.seconds, args.names)
    total = sum(len(b) for b in batches)
    ended = total // 4

    began = time.process_time()
    folded = [stats.fold(batch) for batch in batches]
    fold_s = time.process_time() - began

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "s.sqlite3", isolation_level=None)
        db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):  # as History sets them
            db.execute(f"PRAGMA {pragma}")
        db.executescript(stats.SCHEMA)
        began = time.process_time()
        for buckets in folded:
            with db:  # one transaction a batch, as History.write
                db.execute("BEGIN")
                stats.store(db, buckets)
        store_s = time.process_time() - began
        db.close()

        history = History(Path(tmp) / "w.sqlite3", max_age=86400, max_tasks=10**7)
        began = time.process_time()
        for batch in batches:
            history.write(batch)
        write_s = time.process_time() - began
        history.close()

    share = (fold_s + store_s) / args.seconds
    print(f"{args.rate} tasks/s for {args.seconds} s: {total} events ({ended} runs ended), "
          f"{len(batches)} batches, {args.names} task names")  # fmt: skip
    print(
        f"fold:  {fold_s:.3f} s CPU = {total / fold_s:,.0f} events/s "
        f"({fold_s / total * 1e6:.2f} µs an event, {fold_s / ended * 1e6:.2f} µs a run)"
    )
    print(f"store: {store_s:.3f} s CPU = {store_s / len(batches) * 1e3:.2f} ms a batch")
    print(
        f"statistics: {100 * share:.2f} % of one core at {args.rate} tasks/s; the whole "
        f"History.write: {write_s:.2f} s CPU = {100 * write_s / args.seconds:.0f} %"
    )


if __name__ == "__main__":
    main()
