"""Task history: the task events the dashboard received, kept in a SQLite file.

Three tables: ``tasks`` (one row per task ID: its latest state, arguments, result or error),
``events`` (the timeline: one row per event) and ``pruned`` (the IDs pruned, so that a page
can say "pruned" rather than "never seen"); a fourth, ``state``, keeps what else the dashboard
must remember across a restart, as JSON by key (:meth:`History.load`, :meth:`History.save`:
the alerts' state and history); a fifth, ``task_stats``, the per-task statistics
(taskq.dashboard.stats: counts and runtimes per task name and minute, written with each
batch, with a retention of their own); a sixth, ``queue_samples``, the queues' readings
behind the overview's rate charts (taskq.dashboard.rates: written with each batch, kept for
the charts' span, ``rates_kept``). The file survives a dashboard restart and is
bounded: :meth:`History.prune` drops the tasks (and their events) older than a maximum age
and all but the newest of a maximum count. Troubled tasks (any that failed, retried or were
dead-lettered) have a retention of their own: a flood of successes never evicts the failures
an operator comes to look at. Pruning gives the space back to the file system (incremental
vacuum, then a WAL checkpoint that truncates the log).

Events arrive in batches (:meth:`History.write`): a batch is merged per task in Python first
(:func:`merge`), so a task that went from sent to succeeded within one batch costs one row
update, then merged into the stored row by an upsert that applies the same rule. The rule:
the newest event sets the state, except that ``task.dead-lettered`` never hides the
``FAILURE`` before it (a failed task is dead-lettered as ``max-attempts``), and that
``CANCELLED`` is terminal as in the result store: no later event moves a task out of it,
and of a cancel and the task's own end (``SUCCESS``, ``FAILURE``, ``DEAD``) the earlier one
wins. The ``reason`` is that of the newest event: a dead letter's, or a cancel's (a replayed
task that succeeded has none).

Blocking: every method runs SQL on the calling thread; the dashboard calls them with
``asyncio.to_thread``. One connection, serialised by a lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import rates, stats

STATES = {
    "task.sent": "PENDING",
    "task.received": "RECEIVED",
    "task.started": "STARTED",
    "task.retried": "RETRYING",
    "task.succeeded": "SUCCESS",
    "task.failed": "FAILURE",
    "task.dead-lettered": "DEAD",
    "task.replayed": "REPLAYED",
    "task.cancelled": "CANCELLED",
}
"""The task state each task event leads to. ``task.replayed`` is the dashboard's own: it
records a dead letter it sent back to its queue (:data:`REPLAYED`). ``task.cancelled`` comes
from the worker that dropped or stopped the task, and from the dashboard's Cancel button
(:data:`CANCELLED`: at once, for a task that no worker may meet for a while)."""
REPLAYED = "task.replayed"
CANCELLED = "task.cancelled"
FINISHED = ("SUCCESS", "FAILURE", "DEAD")
"""The states a task reaches by its own end, which a later cancel does not change."""

# The newest known value of these wins (the dead-letter reason: see UPSERT).
_LATEST = ("name", "queue", "worker", "args", "result", "error", "error_message", "traceback",
           "reason", "eta", "eta_at", "root_id", "parent_id", "join_id", "position",
           "size")  # fmt: skip
# Columns added since the first version of the file: (name, declaration) for the migration.
_ADDED = (("troubled", "INTEGER NOT NULL DEFAULT 0"), ("eta", "TEXT"), ("eta_at", "REAL"),
          ("root_id", "TEXT"), ("parent_id", "TEXT"), ("join_id", "TEXT"),
          ("position", "INTEGER"), ("size", "INTEGER"))  # fmt: skip
WORKFLOW_LISTED = 5000
"""Members of one workflow that :meth:`History.workflow` lists, at most."""
DELAYED = "DELAYED"
"""The pseudo-state that :meth:`History.search` takes for the tasks waiting for their ETA."""
_COLUMNS = ("task_id", "state", "attempt", *_LATEST, "sent_at", "started_at", "finished_at",
            "runtime", "updated_at", "troubled")  # fmt: skip
TROUBLE = frozenset({"task.failed", "task.retried", "task.dead-lettered"})
"""The events that make a task troubled: kept under the failures' retention."""
TOMBSTONES = 200_000  # pruned task IDs remembered, at most (about 100 bytes each)
_DETAIL = ("error", "error_message", "reason", "delay", "runtime")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, state TEXT NOT NULL, attempt INTEGER,
    name TEXT, queue TEXT, worker TEXT, args TEXT, result TEXT, error TEXT,
    error_message TEXT, traceback TEXT, reason TEXT, eta TEXT, eta_at REAL,
    sent_at REAL, started_at REAL, finished_at REAL, runtime REAL, updated_at REAL NOT NULL,
    troubled INTEGER NOT NULL DEFAULT 0, root_id TEXT, parent_id TEXT, join_id TEXT,
    position INTEGER, size INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_updated ON tasks (updated_at);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, updated_at);
CREATE TABLE IF NOT EXISTS pruned (
    task_id TEXT PRIMARY KEY, name TEXT, state TEXT, updated_at REAL, pruned_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_at ON pruned (pruned_at);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL, time REAL NOT NULL, type TEXT NOT NULL, attempt INTEGER,
    worker TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, time);
"""
# After the migration of a file written before troubled tasks were kept apart.
INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_kept ON tasks (troubled, updated_at);
CREATE INDEX IF NOT EXISTS tasks_root ON tasks (root_id) WHERE root_id IS NOT NULL;
"""

# Merge a batch's row into the stored one by the rule of the module doc.
_NEWER = "excluded.updated_at >= tasks.updated_at"
_KEEPS_FAILURE = "(excluded.state = 'DEAD' AND tasks.state = 'FAILURE')"
_FINISHED = "({})".format(", ".join(f"'{state}'" for state in FINISHED))
_STAYS_CANCELLED = (f"(tasks.state = 'CANCELLED' AND NOT (excluded.state IN {_FINISHED} "
                    "AND excluded.updated_at < tasks.updated_at))")  # fmt: skip
_BECOMES_CANCELLED = (f"(excluded.state = 'CANCELLED' AND NOT (tasks.state IN {_FINISHED} "
                      "AND tasks.updated_at <= excluded.updated_at))")  # fmt: skip
UPSERT = f"""
INSERT INTO tasks ({", ".join(_COLUMNS)}) VALUES ({", ".join("?" for _ in _COLUMNS)})
ON CONFLICT (task_id) DO UPDATE SET
    state = CASE WHEN {_STAYS_CANCELLED} OR {_BECOMES_CANCELLED} THEN 'CANCELLED'
                 WHEN tasks.state = 'CANCELLED' THEN excluded.state
                 WHEN {_NEWER} AND NOT {_KEEPS_FAILURE} AND excluded.state != 'CANCELLED'
                 THEN excluded.state
                 ELSE tasks.state END,
    attempt = CASE WHEN {_NEWER} THEN excluded.attempt ELSE tasks.attempt END,
    {", ".join(f"{c} = COALESCE(excluded.{c}, tasks.{c})" for c in _LATEST if c != "reason")},
    reason = CASE WHEN {_STAYS_CANCELLED} THEN COALESCE(tasks.reason, excluded.reason)
                  WHEN {_BECOMES_CANCELLED} OR tasks.state = 'CANCELLED'
                       OR ({_NEWER} AND excluded.state != 'CANCELLED')
                  THEN excluded.reason
                  ELSE tasks.reason END,
    sent_at = MIN(COALESCE(excluded.sent_at, tasks.sent_at), COALESCE(tasks.sent_at,
                  excluded.sent_at)),
    started_at = COALESCE(tasks.started_at, excluded.started_at),
    finished_at = COALESCE(excluded.finished_at, tasks.finished_at),
    runtime = COALESCE(excluded.runtime, tasks.runtime),
    updated_at = MAX(excluded.updated_at, tasks.updated_at),
    troubled = MAX(excluded.troubled, tasks.troubled)
"""


# A workflow's tasks in order: the members of one join together, by position, where the
# first of them came; the other tasks (a chain's steps) as they came.
_SEEN = "COALESCE(sent_at, started_at, updated_at)"
_MEMBERS = f"""SELECT task_id, name, queue, state, attempt, parent_id, join_id, position, size,
    sent_at, updated_at, MIN({_SEEN}) OVER (PARTITION BY COALESCE(join_id, task_id)) AS came"""
_IN_ORDER = f"ORDER BY came, position, {_SEEN}, task_id"


def _row_of(event: Mapping[str, Any]) -> dict[str, Any]:
    kind = event["type"]
    when = float(event.get("time") or time.time())
    cancel = kind == CANCELLED  # its reason is the cancel's (the error message)
    return {
        "task_id": str(event["task_id"]),
        "state": STATES[kind],
        "attempt": event.get("attempt"),
        "name": event.get("task"),
        "queue": event.get("queue"),
        "worker": event.get("worker"),
        "args": event.get("args"),
        "result": event.get("result"),
        "error": event.get("error"),
        "error_message": event.get("error_message"),
        "traceback": event.get("traceback"),
        "reason": event.get("reason") or (event.get("error_message") if cancel else None),
        "eta": event.get("eta"),
        "eta_at": _epoch(event.get("eta")),
        "root_id": event.get("root_id"),
        "parent_id": event.get("parent_id"),
        "join_id": event.get("join"),
        "position": event.get("index"),
        "size": event.get("of"),
        "sent_at": when if kind == "task.sent" else None,
        "started_at": when if kind == "task.started" else None,
        "finished_at": when if kind in ("task.succeeded", "task.failed", CANCELLED) else None,
        "runtime": event.get("runtime"),
        "updated_at": when,
        "troubled": int(kind in TROUBLE),
    }


def _combine(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``old`` (Python's copy of UPSERT)."""
    newer = new["updated_at"] >= old["updated_at"]
    merged = {c: new[c] if new[c] is not None else old[c] for c in _LATEST}
    merged["reason"] = _reason(old, new, newer)
    merged["task_id"] = old["task_id"]
    merged["state"] = _state(old, new, newer)
    merged["attempt"] = new["attempt"] if newer else old["attempt"]
    sent = [t for t in (old["sent_at"], new["sent_at"]) if t is not None]
    merged["sent_at"] = min(sent) if sent else None
    merged["started_at"] = old["started_at"] if old["started_at"] is not None else new[
        "started_at"]  # fmt: skip
    for column in ("finished_at", "runtime"):
        merged[column] = new[column] if new[column] is not None else old[column]
    merged["updated_at"] = max(old["updated_at"], new["updated_at"])
    merged["troubled"] = max(old["troubled"], new["troubled"])
    return merged


def _cancel(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[bool, bool]:
    """Whether the merged task stays CANCELLED, or becomes CANCELLED by ``new``."""
    was, now = old["state"], new["state"]
    stays = was == "CANCELLED" and not (now in FINISHED and new["updated_at"] < old["updated_at"])
    becomes = now == "CANCELLED" and not (
        was in FINISHED and old["updated_at"] <= new["updated_at"]
    )
    return stays, becomes


def _state(old: Mapping[str, Any], new: Mapping[str, Any], newer: bool) -> str:
    """The merged state (Python's copy of UPSERT's)."""
    if any(_cancel(old, new)):
        return "CANCELLED"
    if old["state"] == "CANCELLED":  # the task's own end came before the cancel
        return str(new["state"])
    if new["state"] == "CANCELLED":  # likewise
        return str(old["state"])
    keeps_failure = new["state"] == "DEAD" and old["state"] == "FAILURE"
    return str(new["state"] if newer and not keeps_failure else old["state"])


def _reason(old: Mapping[str, Any], new: Mapping[str, Any], newer: bool) -> Any:
    """The merged reason (Python's copy of UPSERT's): a cancel keeps its own."""
    stays, becomes = _cancel(old, new)
    if stays:
        return old["reason"] if old["reason"] is not None else new["reason"]
    takes = becomes or old["state"] == "CANCELLED" or (newer and new["state"] != "CANCELLED")
    return new["reason"] if takes else old["reason"]


def merge(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One task row per task ID from a batch of task events, oldest event first."""
    rows: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: float(e.get("time") or 0)):
        row = _row_of(event)
        old = rows.get(row["task_id"])
        rows[row["task_id"]] = row if old is None else _combine(old, row)
    return rows


def is_task_event(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` belongs in the history (a task event with a task ID)."""
    return event.get("type") in STATES and bool(event.get("task_id"))


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    """Keep tasks at most ``max_age`` seconds, and at most the newest ``max_tasks``."""

    max_age: float
    max_tasks: int


FAILURES_KEPT = Retention(30 * 86400.0, 100_000)
"""The default retention of troubled tasks (failed, retried or dead-lettered)."""


class History:
    """The SQLite task history (see the module doc). ``max_age`` and ``max_tasks`` bound the
    tasks that never failed, ``failures`` the troubled ones; ``rates_kept`` the queues' rate
    readings (seconds)."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_age: float,
        max_tasks: int,
        failures: Retention = FAILURES_KEPT,
        rates_kept: float = 600.0,
    ) -> None:
        self.path = Path(path)
        self.rates_kept = rates_kept
        self.retention = {0: Retention(max_age, max_tasks), 1: failures}
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self.path.chmod(0o600)  # it keeps the secret of the CSRF tokens (and its WAL too)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect in a new file only
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most a batch
        self._db.executescript(SCHEMA)
        self._db.executescript(stats.SCHEMA)
        self._db.executescript(rates.SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a file of an older dashboard up to date (once)."""
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(tasks)")}
        for column, declaration in _ADDED:
            if column not in columns:
                self._db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {declaration}")
        if "troubled" not in columns:
            self._db.execute(
                "UPDATE tasks SET troubled = 1 WHERE state IN ('FAILURE', 'DEAD', 'RETRYING') "
                "OR task_id IN (SELECT task_id FROM events WHERE type IN "
                "('task.failed', 'task.retried', 'task.dead-lettered'))"
            )
        self._db.executescript(INDEXES)
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self._db.execute("VACUUM")  # a file made without incremental vacuum gets it now

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def write(
        self, events: Sequence[Mapping[str, Any]], readings: Sequence[rates.Reading] = ()
    ) -> int:
        """Store a batch of task events (others are ignored) and the queues' rate readings
        taken since the last batch, in one transaction; return how many events were stored."""
        wanted = [e for e in events if is_task_event(e)]
        if not wanted and not readings:
            return 0
        rows = merge(wanted)
        ended = stats.fold(wanted)
        timeline = [
            (str(e["task_id"]), float(e.get("time") or 0), e["type"], e.get("attempt"),
             e.get("worker"), _detail(e))
            for e in wanted
        ]  # fmt: skip
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(UPSERT, [tuple(r[c] for c in _COLUMNS) for r in rows.values()])
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", timeline)
            stats.store(self._db, ended)
            rates.store(self._db, readings)
        return len(wanted)

    def rate_readings(self, now: float | None = None) -> list[rates.Reading]:
        """The queues' rate readings of the last ``rates_kept`` seconds, oldest first."""
        now = time.time() if now is None else now
        with self._lock:
            return rates.read(self._db, now - self.rates_kept)

    def task_stats(self, since: float, until: float, name: str | None = None) -> stats.Rows:
        """The per-task statistics' buckets from ``since`` to ``until`` (see stats.read)."""
        with self._lock:
            return stats.read(self._db, since, until, name)

    def task(self, task_id: str) -> dict[str, Any] | None:
        """A task's row with its ``timeline`` (oldest first), or None if it is not known."""
        with self._lock:
            row = self._db.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            events = self._db.execute(
                "SELECT time, type, attempt, worker, detail FROM events WHERE task_id = ? "
                "ORDER BY time, rowid",
                (task_id,),
            ).fetchall()
        task = dict(row)
        task["timeline"] = [
            {**dict(e), "detail": json.loads(e["detail"]) if e["detail"] else {}} for e in events
        ]
        return task

    def workflow(self, root_id: str, limit: int = WORKFLOW_LISTED) -> dict[str, Any]:
        """The tasks of the workflow ``root_id`` (those whose root it is, and the root task
        itself), up to ``limit``, in order: by join and position in it, then as they were
        sent (a chain's steps). With ``total``, the count of each ``states``, and when the
        newest of them changed (``updated_at``)."""
        members = "FROM tasks WHERE root_id = ? OR task_id = ?"
        with self._lock:
            rows = self._db.execute(f"{_MEMBERS} {members} {_IN_ORDER} LIMIT ?",
                                    (root_id, root_id, limit)).fetchall()  # fmt: skip
            counts = self._db.execute(
                f"SELECT state, COUNT(*), MAX(updated_at) {members} GROUP BY state",
                (root_id, root_id),
            ).fetchall()
        return {
            "root_id": root_id,
            "members": [dict(r) for r in rows],
            "total": sum(c[1] for c in counts),
            "states": {c[0]: c[1] for c in counts},
            "updated_at": max((c[2] for c in counts), default=None),
        }

    def search(
        self,
        text: str = "",
        state: str | Sequence[str] = "",
        limit: int = 50,
        before: float | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """The newest tasks whose ID starts with ``text`` or whose name contains it, in
        ``state`` (one, or any of several) if given (without the traceback, which a list does
        not show). ``state`` :data:`DELAYED`: the tasks waiting for their ETA, the soonest
        first. ``before``: only tasks updated before that time (the next page of a list);
        ``since`` and ``until``: only those last updated in that time range."""
        clauses: list[str] = []
        params: list[Any] = []
        order = "updated_at DESC"
        if text:
            clauses.append("(task_id LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')")
            pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [pattern + "%", "%" + pattern + "%"]
        states = [s.upper() for s in ([state] if isinstance(state, str) else state) if s]
        if states == [DELAYED]:
            clauses.append("state = 'PENDING' AND eta_at IS NOT NULL")
            order = "eta_at"
        elif states:
            clauses.append(f"state IN ({', '.join('?' * len(states))})")
            params += states
        for bound, value in (("updated_at < ?", before), ("updated_at >= ?", since),
                             ("updated_at <= ?", until)):  # fmt: skip
            if value is not None:
                clauses.append(bound)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = ", ".join(c for c in _COLUMNS if c != "traceback")
        sql = f"SELECT {columns} FROM tasks {where} ORDER BY {order} LIMIT ?"
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, [*params, limit]).fetchall()]

    def count(self) -> int:
        """How many tasks are stored."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])

    def load(self, key: str) -> Any:
        """The value saved under ``key`` (None if none was)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save(self, key: str, value: Any) -> None:
        """Keep the JSON-ready ``value`` under ``key``."""
        text = json.dumps(value, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, text))

    def pruned(self, task_id: str) -> dict[str, Any] | None:
        """What was known of ``task_id`` when it was pruned (None if it was not)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM pruned WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else dict(row)

    def prune(self, now: float | None = None) -> int:
        """Drop the tasks beyond their retention (see the module doc) with their events,
        remember their IDs, drop the statistics and the rate readings beyond theirs, give the
        space back; return how many tasks were dropped."""
        now = time.time() if now is None else now
        with self._lock:
            dropped = sum(self._prune(troubled, kept, now) for troubled, kept in
                          self.retention.items())  # fmt: skip
            self._db.execute(
                "DELETE FROM pruned WHERE task_id IN (SELECT task_id FROM pruned "
                "ORDER BY pruned_at DESC LIMIT -1 OFFSET ?)",
                (TOMBSTONES,),
            )
            rates.prune(self._db, now - self.rates_kept)
            if stats.prune(self._db, now) or dropped:
                # sqlite3_exec steps it to the end: each step frees one page.
                self._db.executescript("PRAGMA incremental_vacuum;")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return dropped

    def _prune(self, troubled: int, kept: Retention, now: float) -> int:
        cutoff = now - kept.max_age
        nth = self._db.execute(
            "SELECT updated_at FROM tasks WHERE troubled = ? ORDER BY updated_at DESC "
            "LIMIT 1 OFFSET ?",
            (troubled, kept.max_tasks),
        ).fetchone()
        if nth is not None:
            cutoff = max(cutoff, float(nth[0]) + 1e-9)
        doomed = "FROM tasks WHERE troubled = ? AND updated_at < ?"
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                f"INSERT OR REPLACE INTO pruned SELECT task_id, name, state, updated_at, ? "
                f"{doomed}",
                (now, troubled, cutoff),
            )
            self._db.execute(
                f"DELETE FROM events WHERE task_id IN (SELECT task_id {doomed})",
                (troubled, cutoff),
            )
            return self._db.execute(f"DELETE {doomed}", (troubled, cutoff)).rowcount


def _epoch(iso: Any) -> float | None:
    """An ISO 8601 time (an event's ``eta``) as a Unix time; None if it is not one."""
    try:
        moment = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _detail(event: Mapping[str, Any]) -> str | None:
    detail = {k: event[k] for k in _DETAIL if event.get(k) is not None}
    return json.dumps(detail, separators=(",", ":")) if detail else None
