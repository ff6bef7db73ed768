"""What the dashboard knows now: workers, queue depths and rates, recent outcomes. Pure.

Fed by two sources (see :mod:`taskq.dashboard.sources`): samples (queue depths and the
workers' ``stats`` answers, every few seconds) and events as they arrive. Nothing here does
I/O; :meth:`Live.snapshot` is the JSON the overview page and ``/api/overview`` show.

Rates, per work queue: *out* is deliveries to workers per second (``task.received`` events),
*in* is out plus the change of the ready count (what arrived, whether the senders publish
events or not). Both need workers started with ``--events``; without events, *in* is only
the growth of the queue.

Readings survive a restart (taskq.dashboard.rates): :meth:`Live.take_readings` gives the
new ones to the history writer, :meth:`Live.restore` puts the stored ones back. The first
reading after a restore has no rate (0, as the first reading of a run): the events of the
time the dashboard was down are not known.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..topology import Names

FAILURE_WINDOW = 300.0
WORKER_FIELDS = ("hostname", "pid", "state", "concurrency", "active", "processed", "succeeded",
                 "failed", "retried", "dead_lettered", "reserved", "queues", "uptime",
                 "broker_connected", "events")  # fmt: skip
STOPPED_KEPT = 300.0  # seconds a gracefully stopped worker stays listed
UNSAVED = 10_000  # readings waiting for the history writer, at most (the oldest go first)


@dataclasses.dataclass(slots=True)
class Sample:
    """One reading of a work queue."""

    time: float
    ready: int
    unacked: int | None
    consumers: int
    in_rate: float
    out_rate: float


@dataclasses.dataclass(slots=True)
class QueueView:
    """A work queue: its latest reading, rate history, dead letters and delayed tasks."""

    name: str
    samples: collections.deque[Sample]
    dead: int | None = None
    restored: bool = False
    """Whether the newest reading is from before a restart: no rate across the gap, and no
    latest reading to show (nor to alert on) until a new one."""


class Live:
    """The dashboard's current picture (see the module doc)."""

    def __init__(self, names: Names, *, history_points: int) -> None:
        self.names = names
        self.history_points = history_points
        self.workers: dict[str, dict[str, Any]] = {}
        self.missing: list[dict[str, Any]] = []
        self.discovering = True
        """Until the first ``stats`` broadcast is over: no worker listed yet means none
        answered yet, not that there is none."""
        self.queues: dict[str, QueueView] = {}
        self.delayed = 0
        self.source = ""
        self.seen_queues: set[str] = set()
        self.events_received = 0
        self._unsaved: collections.deque[tuple[str, Sample]] = collections.deque(maxlen=UNSAVED)
        self._delivered: collections.Counter[str] = collections.Counter()
        # Failed and finished tasks per second and (queue, task name): a few hundred
        # counters however busy (the alert rules of one queue or task, and the totals).
        self._by_task: dict[int, dict[tuple[str, str], list[int]]] = {}

    # -- events ------------------------------------------------------------------------------

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Count one event (called for every event received)."""
        self.events_received += 1
        kind = event.get("type")
        queue = event.get("queue")
        if isinstance(queue, str):
            self.seen_queues.add(queue)
        if kind == "task.received" and isinstance(queue, str):
            self._delivered[queue] += 1
        elif kind in ("task.succeeded", "task.failed"):
            second = int(event.get("time") or time.time())
            where = (str(queue or ""), str(event.get("task") or ""))
            by_task = self._by_task.setdefault(second, {}).setdefault(where, [0, 0])
            by_task[0] += kind == "task.failed"
            by_task[1] += 1
        elif kind in ("worker.online", "worker.heartbeat", "worker.offline"):
            self._worker_event(kind, event)

    def _worker_event(self, kind: str, event: Mapping[str, Any]) -> None:
        name = event.get("worker")
        if not isinstance(name, str):
            return
        row = self.workers.setdefault(name, {"worker": name})
        row.update({k: event[k] for k in WORKER_FIELDS if k in event})
        row["last_seen"] = float(event.get("time") or time.time())
        if kind == "worker.offline":
            row["state"] = "stopped"

    def failure_rate(self, now: float, window: float = FAILURE_WINDOW) -> tuple[int, int]:
        """``(failed, finished)`` tasks in the last ``window`` seconds."""
        counts = self.failures(now, window).values()
        return sum(failed for failed, _ in counts), sum(finished for _, finished in counts)

    def failures(
        self, now: float, window: float = FAILURE_WINDOW
    ) -> dict[tuple[str, str], tuple[int, int]]:
        """``(failed, finished)`` tasks in the last ``window`` seconds per ``(queue, task
        name)`` (empty strings for an event that did not say)."""
        seconds = self._by_task
        for second in [s for s in seconds if s < now - FAILURE_WINDOW]:
            del seconds[second]
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for second, counts in seconds.items():
            if second >= now - window:
                for where, (failed, finished) in counts.items():
                    before = totals.get(where, (0, 0))
                    totals[where] = (before[0] + failed, before[1] + finished)
        return totals

    # -- samples -----------------------------------------------------------------------------

    def on_stats(
        self, replies: Iterable[tuple[str, Mapping[str, Any]]], asked: float, now: float
    ) -> None:
        """The workers' answers to a ``stats`` broadcast sent at ``asked``. An event that came
        in since (``worker.offline``) is newer than an answer: the answer does not undo it."""
        answered = set()
        for name, stats in replies:
            answered.add(name)
            row = self.workers.setdefault(name, {"worker": name})
            if row.get("last_seen", 0.0) > asked:
                continue
            row.update({k: stats[k] for k in WORKER_FIELDS if k in stats})
            row["last_seen"] = now
        for name, row in list(self.workers.items()):
            stopped = row.get("state") == "stopped"
            if name in answered or (stopped and now - row["last_seen"] < STOPPED_KEPT):
                continue
            del self.workers[name]  # gone: stopped long ago, or without an offline event

    def on_missing(self, missing: Iterable[Mapping[str, Any]]) -> None:
        """The workers a broadcast expected but did not hear from (the end of a reading of
        the workers: discovery is over)."""
        self.discovering = False
        self.missing = [dict(m) for m in missing]
        for m in self.missing:
            self.workers.pop(m["worker"], None)

    def on_depths(self, rows: Iterable[Mapping[str, Any]], source: str, now: float) -> None:
        """A reading of queue depths: rows of ``{name, ready, unacked, consumers}``."""
        self.source = source
        names = self.names
        work, dead, delayed = f"{names.prefix}.q.", ".dead", f"{names.prefix}.delay."
        self.delayed = 0
        for row in rows:
            full = str(row["name"])
            if full.startswith(delayed):
                self.delayed += int(row.get("ready") or 0) + int(row.get("unacked") or 0)
            elif full.startswith(work) and full.endswith(dead):
                view = self._view(full[len(work) : -len(dead)])
                view.dead = int(row.get("ready") or 0)
            elif full.startswith(work):
                self._sample(self._view(full[len(work) :]), row, now)

    def _view(self, queue: str) -> QueueView:
        view = self.queues.get(queue)
        if view is None:
            view = QueueView(queue, collections.deque(maxlen=self.history_points))
            self.queues[queue] = view
        return view

    def _sample(self, view: QueueView, row: Mapping[str, Any], now: float) -> None:
        ready = int(row.get("ready") or 0)
        unacked = row.get("unacked")
        delivered = self._delivered.pop(view.name, 0)
        out_rate = in_rate = 0.0
        if view.samples and not view.restored:
            last = view.samples[-1]
            elapsed = max(now - last.time, 1e-6)
            out_rate = delivered / elapsed
            in_rate = max(0.0, out_rate + (ready - last.ready) / elapsed)
        sample = Sample(now, ready, None if unacked is None else int(unacked),
                        int(row.get("consumers") or 0), in_rate, out_rate)  # fmt: skip
        view.samples.append(sample)
        view.restored = False
        self._unsaved.append((view.name, sample))

    def take_readings(self) -> list[tuple[str, Sample]]:
        """The readings taken since the last call, as ``(queue, sample)``, to be stored."""
        readings = list(self._unsaved)
        self._unsaved.clear()
        return readings

    def restore(self, readings: Iterable[tuple[str, Sample]]) -> None:
        """Put back stored readings ``(queue, sample)``, oldest first, before any new one."""
        for queue, sample in readings:
            view = self._view(queue)
            view.samples.append(sample)
            view.restored = True

    # -- reading -----------------------------------------------------------------------------

    def queue_rows(self) -> list[dict[str, Any]]:
        """One row per work queue: the latest reading, dead letters, and the rate series. A
        reading from before a restart is in the series only: the queue may have changed, or
        gone, since."""
        rows = []
        for name in sorted(self.queues):
            view = self.queues[name]
            last = view.samples[-1] if view.samples and not view.restored else None
            rows.append({
                "queue": name,
                "ready": last.ready if last else None,
                "unacked": last.unacked if last else None,
                "consumers": last.consumers if last else None,
                "in_rate": round(last.in_rate, 2) if last else None,
                "out_rate": round(last.out_rate, 2) if last else None,
                "dead": view.dead,
                "series": {
                    "time": [round(s.time, 1) for s in view.samples],
                    "in": [round(s.in_rate, 2) for s in view.samples],
                    "out": [round(s.out_rate, 2) for s in view.samples],
                },
            })  # fmt: skip
        return rows

    def worker_rows(self) -> list[dict[str, Any]]:
        """One row per known worker, by name."""
        return [dict(self.workers[name]) for name in sorted(self.workers)]

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything the overview shows, as JSON-ready data."""
        failed, finished = self.failure_rate(now)
        return {
            "time": now,
            "workers": self.worker_rows(),
            "missing": list(self.missing),
            "discovering": self.discovering,
            "queues": self.queue_rows(),
            "delayed": self.delayed,
            "source": self.source,
            "failures": {"failed": failed, "finished": finished, "window": FAILURE_WINDOW},
            "events_received": self.events_received,
        }
