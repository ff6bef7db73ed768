"""The queues' readings behind the overview's rate charts (taskq.dashboard.live), kept in the
history file so that a restarted dashboard shows the last minutes at once, not an empty chart.

One row per work queue and reading. :func:`store` adds the readings taken since the last
batch (inside the transaction of the history's batch of events: one transaction, not one per
reading), :func:`prune` drops those older than the charts' span (``chart_seconds``) and
:func:`read` gives back those of a span, oldest first. A few hundred rows a queue at most.

Blocking: SQL on the connection given (the History's, under its lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .live import Sample

Reading = tuple[str, Sample]
"""A work queue's short name and one reading of it."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_samples (
    queue TEXT NOT NULL, time REAL NOT NULL, ready INTEGER NOT NULL, unacked INTEGER,
    consumers INTEGER NOT NULL, in_rate REAL NOT NULL, out_rate REAL NOT NULL,
    PRIMARY KEY (queue, time)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS queue_samples_time ON queue_samples (time);
"""


def store(db: sqlite3.Connection, readings: Sequence[Reading]) -> None:
    """Add ``readings`` (call it inside the batch's transaction)."""
    db.executemany(
        "INSERT OR REPLACE INTO queue_samples VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(queue, s.time, s.ready, s.unacked, s.consumers, s.in_rate, s.out_rate)
         for queue, s in readings],
    )  # fmt: skip


def prune(db: sqlite3.Connection, before: float) -> int:
    """Drop the readings taken before ``before``; how many went."""
    return int(db.execute("DELETE FROM queue_samples WHERE time < ?", (before,)).rowcount)


def read(db: sqlite3.Connection, since: float) -> list[Reading]:
    """The readings taken since ``since``, oldest first."""
    rows = db.execute(
        "SELECT queue, time, ready, unacked, consumers, in_rate, out_rate FROM queue_samples "
        "WHERE time >= ? ORDER BY time",
        (since,),
    ).fetchall()
    return [(row[0], Sample(*row[1:])) for row in rows]
