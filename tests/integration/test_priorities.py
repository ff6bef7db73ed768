"""Message priorities: a backlog is served highest priority first; task and call defaults."""

from __future__ import annotations

import pytest

from taskq import App
from tests.support import BROKER, eventually, queue_length, queue_messages, running_worker


@pytest.fixture
def started() -> list[str]:
    return []


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], started: list[str]) -> App:
    app = App("prio", broker=BROKER, prefix=prefix)

    @app.task
    async def job(label: str) -> str:
        started.append(label)
        return label

    @app.task(priority=7)
    async def urgent(label: str) -> str:
        started.append(label)
        return label

    return app


async def test_high_priority_task_runs_before_a_backlog(app: App, started: list[str]) -> None:
    job = app.tasks["job"]
    work_queue = app.names.work_queue("default")
    async with app:
        low = [await job.options(priority=0).delay(f"low{i}") for i in range(20)]
        high = await job.options(priority=9).delay("high")

        async def backlog_in_queue() -> bool:
            return await queue_length(work_queue) == 21

        await eventually(backlog_in_queue, what="21 messages in the work queue")
        async with running_worker(app, concurrency=1):
            assert await high.result(timeout=10) == "high"
            for i, handle in enumerate(low):
                assert await handle.result(timeout=10) == f"low{i}"

    assert len(started) == 21
    assert started[0] == "high", started[:3]
    assert started[1:] == [f"low{i}" for i in range(20)]  # equal priority keeps FIFO order


async def test_task_default_priority_and_call_override(app: App, started: list[str]) -> None:
    job, urgent = app.tasks["job"], app.tasks["urgent"]
    work_queue = app.names.work_queue("default")
    async with app:
        plain = await job.delay("plain")  # the app's default priority (0)
        default7 = await urgent.delay("default7")  # the task's default priority
        lowered = await urgent.options(priority=1).delay("lowered")  # the call wins
        raised = await job.options(priority=9).delay("raised")

        async def four_queued() -> bool:
            return await queue_length(work_queue) == 4

        await eventually(four_queued, what="4 messages in the work queue")
        priorities = {m.message_id: m.priority for m in await queue_messages("", work_queue)}
        assert priorities == {plain.id: 0, default7.id: 7, lowered.id: 1, raised.id: 9}

        async with running_worker(app, concurrency=1):
            for handle in (plain, default7, lowered, raised):
                await handle.result(timeout=10)

    assert started == ["raised", "default7", "lowered", "plain"]
