"""The queues' rate readings in the history file: stored with a batch, pruned to the charts'
span, and put back into the live picture after a restart."""

from __future__ import annotations

from pathlib import Path

from taskq.dashboard.history import History
from taskq.dashboard.live import Live
from taskq.topology import Names


def reading(live: Live, at: float, ready: int, delivered: int = 0) -> None:
    for _ in range(delivered):
        live.on_event({"type": "task.received", "queue": "default", "time": at})
    live.on_depths([{"name": "p.q.default", "ready": ready, "unacked": 1, "consumers": 2}],
                   "passive declares", at)  # fmt: skip


def test_readings_survive_a_restart_and_fill_the_charts_again(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    live = Live(Names("p"), history_points=10)
    for at, ready, delivered in ((1000.0, 5, 0), (1002.0, 9, 4), (1004.0, 3, 10)):
        reading(live, at, ready, delivered)
    history = History(path, max_age=3600, max_tasks=100, rates_kept=600)
    event = {"type": "task.succeeded", "task_id": "a", "time": 1004.0, "task": "add"}
    assert history.write([event], live.take_readings()) == 1  # one batch: events and readings
    assert live.take_readings() == []
    history.close()

    reopened = History(path, max_age=3600, max_tasks=100, rates_kept=600)
    restored = Live(Names("p"), history_points=10)
    restored.restore(reopened.rate_readings(now=1010.0))
    (before,), (after,) = live.queue_rows(), restored.queue_rows()
    series = {"time": [1000.0, 1002.0, 1004.0], "in": [0.0, 4.0, 2.0], "out": [0.0, 2.0, 5.0]}
    assert after["series"] == before["series"] == series
    # The readings before the restart are history: none is the queue's latest (nor alerts).
    assert (after["ready"], after["in_rate"], before["ready"]) == (None, None, 3)
    # No rate across the restart (its deliveries were not seen), then rates again.
    reading(restored, 1012.0, 3, 6)
    reading(restored, 1014.0, 3, 6)
    series = restored.queue_rows()[0]["series"]
    assert (series["time"][-2:], series["out"][-2:]) == ([1012.0, 1014.0], [0.0, 3.0])
    assert [s.time for _, s in restored.take_readings()] == [1012.0, 1014.0]  # the new ones


def test_readings_older_than_the_charts_span_are_neither_restored_nor_kept(
    tmp_path: Path,
) -> None:
    live = Live(Names("p"), history_points=100)
    for second in range(0, 100, 10):
        reading(live, 1000.0 + second, second)
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100, rates_kept=30)
    history.write([], live.take_readings())
    assert [s.time for _, s in history.rate_readings(now=1100.0)] == [1070.0, 1080.0, 1090.0]
    restored = Live(Names("p"), history_points=100)
    restored.restore(history.rate_readings(now=1100.0))
    assert restored.queue_rows()[0]["series"]["time"] == [1070.0, 1080.0, 1090.0]
    history.prune(now=1100.0)
    assert [s.time for _, s in history.rate_readings(now=0.0)] == [1070.0, 1080.0, 1090.0]
    assert history.write([], []) == 0
