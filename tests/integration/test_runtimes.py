"""A task that fails, is retried or is dead-lettered reports how long it ran (issue 19): in its
events, in the worker's log line and in the Prometheus duration histogram, not 0."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from taskq import App, DeadLettered, Hook, Reject, RetryPolicy, TaskDone, TaskFailed
from taskq.metrics import WorkerMetrics
from tests.support import BROKER, eventually, running_worker

# Every task here works at least this long before it raises: the lower bound the test checks.
WORK = 0.3


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("runtimes", broker=BROKER, prefix=prefix)

    @app.task(retry=RetryPolicy(max_attempts=2, delay=0, jitter=False))
    async def slow_fail() -> None:
        await asyncio.sleep(WORK)
        raise ValueError("boom")

    @app.task
    async def slow_reject() -> None:
        await asyncio.sleep(WORK)
        raise Reject("not today")

    return app


async def test_failed_retried_and_dead_lettered_tasks_report_their_runtime(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("prometheus_client")
    caplog.set_level(logging.INFO, logger="taskq.worker")
    seen: list[tuple[str, dict[str, Any]]] = []

    class Listen(Hook):
        async def on_failure(self, done: TaskDone) -> None:
            seen.append(("task.failed", {"task": done.envelope.task_name, "runtime": done.runtime}))

        async def on_retry(self, done: TaskDone) -> None:
            seen.append(
                ("task.retried", {"task": done.envelope.task_name, "runtime": done.runtime})
            )

        async def on_dead_letter(self, dead: DeadLettered) -> None:
            assert dead.envelope is not None
            seen.append(
                ("task.dead-lettered", {"task": dead.envelope.task_name, "runtime": dead.runtime})
            )

    async with app, running_worker(app) as worker:
        metrics = WorkerMetrics(worker)
        worker.add_hook(metrics)
        worker.add_hook(Listen())
        with pytest.raises(TaskFailed):
            await (await app.send("slow_fail")).result(timeout=30)
        with pytest.raises(TaskFailed):
            await (await app.send("slow_reject")).result(timeout=30)

        def outcomes() -> list[tuple[str, dict[str, Any]]]:
            return [(kind, f) for kind, f in seen if kind not in ("task.received", "task.started")]

        async def told() -> bool:
            return len(outcomes()) >= 4

        await eventually(told, what="every outcome event")
    # slow_fail: attempt 1 is retried; attempt 2 is dead-lettered (max-attempts) and fails.
    # slow_reject: dead-lettered (rejected).
    assert sorted((kind, f["task"]) for kind, f in outcomes()) == [
        ("task.dead-lettered", "slow_fail"),
        ("task.dead-lettered", "slow_reject"),
        ("task.failed", "slow_fail"),
        ("task.retried", "slow_fail"),
    ]
    for kind, fields in outcomes():
        assert fields["runtime"] >= WORK, (kind, fields)
    registry = metrics.registry
    count = registry.get_sample_value("taskq_task_duration_seconds_count", {"task": "slow_fail"})
    total = registry.get_sample_value("taskq_task_duration_seconds_sum", {"task": "slow_fail"})
    assert count == 2.0  # the retried attempt and the failed one
    assert total is not None and total >= 2 * WORK
    logged = [
        (record.getMessage(), getattr(record, "duration", None))
        for record in caplog.records
        if getattr(record, "task_name", None) == "slow_fail" and hasattr(record, "duration")
    ]
    assert len(logged) == 2, logged  # "retrying in ..." and "failed: ..."
    assert all(duration >= WORK for _, duration in logged), logged
