"""The dashboard's live picture (pure): rates, dead letters, delayed tasks, workers."""

from __future__ import annotations

from taskq.dashboard.live import Live
from taskq.topology import Names


def test_rates_dead_letters_and_delayed_from_readings_and_events() -> None:
    live = Live(Names("p"), history_points=10)
    rows = [
        {"name": "p.q.default", "ready": 10, "unacked": None, "consumers": 1},
        {"name": "p.q.default.dead", "ready": 2},
        {"name": "p.delay.3", "ready": 4},
    ]
    live.on_depths(rows, "passive declares", 100.0)
    for _ in range(20):
        live.on_event({"type": "task.received", "queue": "default", "time": 101.0})
    rows[0] = {**rows[0], "ready": 30}
    live.on_depths(rows, "passive declares", 102.0)
    (queue,) = live.queue_rows()
    assert (queue["out_rate"], queue["in_rate"]) == (10.0, 20.0)  # 20 delivered, 20 more ready
    assert (queue["dead"], live.delayed) == (2, 4)
    assert queue["series"]["out"] == [0.0, 10.0]


def test_a_stats_answer_does_not_undo_a_newer_offline_event() -> None:
    live = Live(Names("p"), history_points=10)
    live.on_stats([("w1", {"state": "running", "active": 1})], asked=0.0, now=1.0)
    live.on_event({"type": "worker.offline", "worker": "w1", "time": 2.0, "state": "stopping"})
    live.on_stats([("w1", {"state": "stopping"})], asked=1.5, now=3.0)
    assert live.worker_rows()[0]["state"] == "stopped"
    live.on_stats([], asked=3.0, now=4.0)  # a stopped worker stays listed for a while
    assert [w["worker"] for w in live.worker_rows()] == ["w1"]
    live.on_stats([], asked=1000.0, now=1000.0)
    assert live.worker_rows() == []


def test_failure_rate_counts_the_window() -> None:
    live = Live(Names("p"), history_points=10)
    for at, kind in [(10.0, "failed"), (200.0, "succeeded"), (250.0, "failed")]:
        live.on_event({"type": f"task.{kind}", "time": at})
    assert live.failure_rate(300.0, window=300.0) == (2, 3)
    assert live.failure_rate(300.0, window=60.0) == (1, 1)


def test_workers_are_being_discovered_until_the_first_answers_come() -> None:
    live = Live(Names("p"), history_points=10)
    before = live.snapshot(0.0)
    assert (before["workers"], before["discovering"]) == ([], True)
    live.on_stats([], asked=0.0, now=1.0)
    live.on_missing([])
    after = live.snapshot(1.0)
    assert (after["workers"], after["discovering"]) == ([], False)  # then none is none
