"""The dashboard's SQLite task history: merging events, search, bounds, and a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskq.dashboard.api import task_version
from taskq.dashboard.history import History, Retention, merge


def event(kind: str, task_id: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"type": f"task.{kind}", "task_id": task_id, "time": at, "task": "add",
            "queue": "default", "attempt": 1, **fields}  # fmt: skip


def test_merge_takes_the_newest_state_but_keeps_a_failure_over_its_dead_letter() -> None:
    rows = merge([
        event("failed", "a", 3.0, error="ValueError", traceback="tb"),
        event("sent", "a", 1.0, args="1, 2"),
        event("dead-lettered", "a", 3.1, reason="max-attempts"),
        event("started", "a", 2.0, worker="w1"),
    ])  # fmt: skip
    row = rows["a"]
    assert row["state"] == "FAILURE" and row["reason"] == "max-attempts"
    assert (row["args"], row["worker"], row["traceback"]) == ("1, 2", "w1", "tb")
    assert (row["sent_at"], row["started_at"], row["finished_at"]) == (1.0, 2.0, 3.0)


def test_stored_rows_merge_across_batches_and_a_replay_revives_a_task(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    history.write([event("sent", "a", 1.0, args="'x'"), event("failed", "a", 2.0, error="E")])
    history.write([event("dead-lettered", "a", 2.1, reason="max-attempts")])
    assert history.task("a")["state"] == "FAILURE"  # type: ignore[index]
    history.write([event("sent", "a", 0.5)])  # a late event never moves the state back
    assert history.task("a")["state"] == "FAILURE"  # type: ignore[index]
    history.write([event("started", "a", 5.0), event("succeeded", "a", 6.0, result="3")])
    task = history.task("a")
    assert task is not None
    assert (task["state"], task["result"], task["args"], task["sent_at"]) == (
        "SUCCESS",
        "3",
        "'x'",
        0.5,
    )
    assert [e["type"] for e in task["timeline"]] == [
        "task.sent",
        "task.sent",
        "task.failed",
        "task.dead-lettered",
        "task.started",
        "task.succeeded",
    ]
    assert task["timeline"][3]["detail"] == {"reason": "max-attempts"}
    history.close()
    reopened = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    assert reopened.task("a")["state"] == "SUCCESS"  # type: ignore[index]


def test_search_by_id_prefix_name_and_state(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    history.write([event("succeeded", "abc-1", 1.0), event("failed", "abd-2", 2.0),
                   {**event("succeeded", "zzz", 3.0), "task": "send_mail"}])  # fmt: skip
    ids = lambda found: [t["task_id"] for t in found]  # noqa: E731
    assert ids(history.search("ab")) == ["abd-2", "abc-1"]
    assert ids(history.search("mail")) == ["zzz"]
    assert ids(history.search("", "failure")) == ["abd-2"]
    assert ids(history.search("%")) == []  # LIKE wildcards are taken literally
    assert "traceback" not in history.search()[0]


def test_search_by_several_states_and_a_time_range(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=10**10, max_tasks=100)
    history.write([event("succeeded", "s1", 100.0), event("failed", "f1", 200.0),
                   event("dead-lettered", "d1", 300.0), event("failed", "f2", 400.0),
                   event("started", "r1", 500.0)])  # fmt: skip
    ids = lambda found: [t["task_id"] for t in found]  # noqa: E731
    assert ids(history.search("", ["failure", "dead"])) == ["f2", "d1", "f1"]
    assert ids(history.search("", ["FAILURE", "DEAD"], since=250.0)) == ["f2", "d1"]
    assert ids(history.search("", ["FAILURE", "DEAD"], since=250.0, until=350.0)) == ["d1"]
    assert ids(history.search("", [], until=150.0)) == ["s1"]
    assert ids(history.search("", "", since=450.0)) == ["r1"]


def test_prune_by_age_and_by_count(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=100, max_tasks=3)
    history.write([event("succeeded", f"t{i}", 1000.0 + i) for i in range(6)])
    assert history.prune(now=1050.0) == 3  # count: the newest three stay
    assert [t["task_id"] for t in history.search()] == ["t5", "t4", "t3"]
    assert history.prune(now=1104.5) == 2  # age: older than 100 s
    assert history.count() == 1 and history.task("t3") is None
    assert history.task("t5")["timeline"]  # type: ignore[index]


def test_failures_have_their_own_retention_and_a_pruned_task_is_known_as_pruned(
    tmp_path: Path,
) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=3,
                      failures=Retention(3600, 2))  # fmt: skip
    history.write([
        event("failed", "f1", 10.0), event("dead-lettered", "f1", 10.1, reason="max-attempts"),
        event("retried", "r1", 11.0), event("succeeded", "r1", 12.0),
        event("failed", "f0", 5.0),
    ])  # fmt: skip
    history.write([event("succeeded", f"ok{i}", 100.0 + i) for i in range(50)])  # a flood
    assert history.prune(now=200.0) == 47 + 1  # 47 successes, the oldest troubled task
    assert [t["task_id"] for t in history.search("", "failure")] == ["f1"]
    assert history.task("r1")["state"] == "SUCCESS"  # type: ignore[index]  # it retried
    assert history.count() == 3 + 2
    assert history.task("ok0") is None and history.task("never") is None
    pruned = history.pruned("ok0")
    assert pruned is not None and (pruned["state"], pruned["pruned_at"]) == ("SUCCESS", 200.0)
    assert history.pruned("f0") is not None and history.pruned("never") is None


def test_pruning_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    history = History(path, max_age=3600, max_tasks=10)

    def size() -> int:
        return sum(p.stat().st_size for p in tmp_path.glob("h.sqlite3*"))

    big = "x" * 2000
    for batch in range(10):
        history.write([event("succeeded", f"t{batch}-{i}", 100 + batch + i / 1000, args=big)
                       for i in range(500)])  # fmt: skip
    full = size()
    assert full > 10_000_000
    history.prune(now=200.0)
    assert history.count() == 10
    assert size() < full / 10


def test_a_file_of_an_older_dashboard_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, state TEXT NOT NULL, attempt INTEGER,"
        " name TEXT, queue TEXT, worker TEXT, args TEXT, result TEXT, error TEXT,"
        " error_message TEXT, traceback TEXT, reason TEXT, sent_at REAL, started_at REAL,"
        " finished_at REAL, runtime REAL, updated_at REAL NOT NULL);"
        "INSERT INTO tasks (task_id, state, updated_at) VALUES ('f', 'FAILURE', 1.0);"
        "INSERT INTO tasks (task_id, state, updated_at) VALUES ('s', 'SUCCESS', 2.0);"
    )
    old.commit()
    old.close()
    history = History(path, max_age=3600, max_tasks=0)
    assert history.prune(now=10.0) == 1
    assert history.task("f") is not None and history.pruned("s") is not None
    assert history.workflow("f")["total"] == 1  # the workflow columns were added


def test_a_replay_is_recorded_and_clears_the_dead_letter_reason(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    history.write([event("failed", "a", 2.0, error="E"),
                   event("dead-lettered", "a", 2.1, reason="max-attempts")])  # fmt: skip
    history.write([{"type": "task.replayed", "task_id": "a", "time": 3.0, "task": "add"}])
    task = history.task("a")
    assert task is not None and (task["state"], task["reason"]) == ("REPLAYED", None)
    history.write([event("started", "a", 4.0), event("succeeded", "a", 5.0)])
    task = history.task("a")
    assert task is not None and (task["state"], task["reason"]) == ("SUCCESS", None)
    assert [e["type"] for e in task["timeline"]][2] == "task.replayed"


def test_delayed_tasks_are_listed_by_their_eta(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    history.write([event("sent", "late", 1.0, eta="2030-01-01T02:00:00+00:00"),
                   event("sent", "soon", 2.0, eta="2030-01-01T03:00:00+02:00"),
                   event("sent", "now", 3.0),
                   event("sent", "ran", 4.0, eta="2030-01-01T00:00:00+00:00"),
                   event("started", "ran", 5.0)])  # fmt: skip
    found = history.search("", "delayed")
    assert [t["task_id"] for t in found] == ["soon", "late"]
    assert found[0]["eta_at"] == 1893459600.0  # 01:00 UTC


def test_a_cancel_is_terminal_and_loses_to_an_end_that_came_first(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    cancel = {"error": "taskq.TaskCancelled", "error_message": "not needed"}
    history.write([event("sent", "a", 1.0), event("started", "a", 2.0)])
    history.write([event("cancelled", "a", 3.0, **cancel)])
    # The worker's own events that come after the cancel never move it back.
    history.write([event("received", "a", 4.0), event("succeeded", "a", 5.0)])
    task = history.task("a")
    assert task is not None and (task["state"], task["reason"]) == ("CANCELLED", "not needed")
    # A task that succeeded before the cancel stays SUCCESS, whichever event arrives first.
    history.write([event("succeeded", "b", 2.0), event("cancelled", "b", 3.0, **cancel)])
    history.write([event("cancelled", "c", 3.0, **cancel)])
    history.write([event("succeeded", "c", 2.0)])
    for task_id in ("b", "c"):
        assert history.task(task_id)["state"] == "SUCCESS"  # type: ignore[index]
    assert [r["task_id"] for r in history.search(state="CANCELLED")] == ["a"]
    rows = merge([event("cancelled", "d", 3.0, **cancel), event("succeeded", "d", 4.0)])
    assert rows["d"]["state"] == "CANCELLED" and rows["d"]["reason"] == "not needed"


def test_a_workflows_tasks_are_listed_in_order_with_their_states(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    member = {"root_id": "wf", "join": "j"}
    history.write([
        event("sent", "first", 1.0, root_id="wf"),
        event("succeeded", "first", 2.0, root_id="wf"),
        *(event("sent", f"m{i}", 3.0 + (2 - i) / 10, **member, index=i, of=3) for i in range(3)),
        event("succeeded", "m0", 4.0, parent_id="first", **member, index=0, of=3),
        event("started", "m2", 4.1, parent_id="first", **member, index=2, of=3),
        event("sent", "callback", 5.0, parent_id="m0", root_id="wf"),
        event("sent", "elsewhere", 3.5),
    ])  # fmt: skip
    found = history.workflow("wf")
    assert [m["task_id"] for m in found["members"]] == ["first", "m0", "m1", "m2", "callback"]
    assert [m["state"] for m in found["members"]] == [
        "SUCCESS", "SUCCESS", "PENDING", "STARTED", "PENDING"]  # fmt: skip
    assert (found["total"], found["states"]) == (5, {"SUCCESS": 2, "PENDING": 2, "STARTED": 1})
    assert found["updated_at"] == 5.0
    task = history.task("m2")
    assert task is not None
    assert (task["root_id"], task["parent_id"], task["join_id"], task["position"],
            task["size"]) == ("wf", "first", "j", 2, 3)  # fmt: skip
    assert [m["task_id"] for m in history.workflow("wf", limit=2)["members"]] == ["first", "m0"]
    assert history.workflow("nothing")["total"] == 0


def test_a_late_older_event_changes_what_a_task_page_is_sent(tmp_path: Path) -> None:
    # The Cancel button records task.cancelled at once; the worker's own, timed when it
    # stopped the task (earlier), arrives later and changes no column, only the timeline.
    history = History(tmp_path / "h.sqlite3", max_age=3600, max_tasks=100)
    cancel = {"error": "taskq.TaskCancelled", "error_message": "stuck"}
    history.write([event("started", "a", 1.0), event("cancelled", "a", 3.0, **cancel)])
    before = history.task("a")
    history.write([event("cancelled", "a", 2.5, worker="w1", **cancel)])
    after = history.task("a")
    assert before is not None and after is not None
    assert after["updated_at"] == before["updated_at"]
    assert task_version(after) != task_version(before)
