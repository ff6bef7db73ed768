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


async def test_one_worker_on_two_priority_queues_serves_each_by_priority(
    app: App, started: list[str], topology_cleanup: set[str]
) -> None:
    topology_cleanup.add("side")
    job = app.tasks["job"]
    queues = {"default": app.names.work_queue("default"), "side": app.names.work_queue("side")}
    async with app:
        sent = []
        for name in queues:
            on_queue = job.options(queue=name)
            sent += [await on_queue.options(priority=0).delay(f"{name}-low{i}") for i in range(8)]
            sent += [await on_queue.options(priority=9).delay(f"{name}-high")]

        async def backlogs_in_queues() -> bool:
            return [await queue_length(q) for q in queues.values()] == [9, 9]

        await eventually(backlogs_in_queues, what="9 messages in each work queue")
        async with running_worker(app, queues=list(queues), concurrency=1):
            assert sorted([await h.result(timeout=30) for h in sent]) == sorted(started)

    assert len(started) == 18
    for name in queues:
        # Per queue, the high priority task ran first, then the others in the order sent;
        # how the worker interleaves the two queues is the broker's round robin.
        mine = [label for label in started if label.startswith(f"{name}-")]
        assert mine == [f"{name}-high", *(f"{name}-low{i}" for i in range(8))]
