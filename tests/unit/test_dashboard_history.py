"""The dashboard's SQLite task history: merging events, search, bounds, and a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskq.dashboard.history import History, merge


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


def test_prune_by_age_and_by_count(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite3", max_age=100, max_tasks=3)
    history.write([event("succeeded", f"t{i}", 1000.0 + i) for i in range(6)])
    assert history.prune(now=1050.0) == 3  # count: the newest three stay
    assert [t["task_id"] for t in history.search()] == ["t5", "t4", "t3"]
    assert history.prune(now=1104.5) == 2  # age: older than 100 s
    assert history.count() == 1 and history.task("t3") is None
    assert history.task("t5")["timeline"]  # type: ignore[index]
