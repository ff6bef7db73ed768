"""A task goes from delay() to an in-process worker and back as a typed result."""

from __future__ import annotations

import asyncio
import logging

import pytest

from taskq import App, ResultUnavailable, TaskFailed, TaskStatus
from tests.support import BROKER, eventually, running_worker


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("t", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)

    return app


async def test_add_returns_ten(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["add"].delay(4, 6)
        assert await handle.result(timeout=10) == 10
        assert await handle.status() is TaskStatus.SUCCESS


async def test_failure_carries_remote_traceback(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["boom"].delay("kaput")
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=10)
        assert info.value.remote_type == "ValueError"
        assert info.value.remote_message == "kaput"
        assert "raise ValueError(message)" in info.value.remote_traceback
        assert await handle.status() is TaskStatus.FAILURE


@pytest.mark.idle_extra_queue  # it counts what its worker did
async def test_ignore_result_records_nothing_and_the_handle_says_so(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App("ignore", broker=BROKER, prefix=prefix)
    runs: list[int] = []

    @app.task(ignore_result=True)
    async def fire(x: int) -> int:
        runs.append(x)
        return x

    @app.task
    async def normal(x: int) -> int:
        runs.append(x)
        return x

    async with app, running_worker(app) as worker:
        ignored = [await fire.delay(1), await normal.options(ignore_result=True).delay(2)]
        kept = await fire.options(ignore_result=False).delay(3)
        assert await kept.result(timeout=20) == 3

        async def all_done() -> bool:
            return worker.counters.succeeded == 3

        await eventually(all_done, what="the three tasks to finish")
        assert sorted(runs) == [1, 2, 3]
        for handle in ignored:
            with pytest.raises(ResultUnavailable, match="ignore_result"):
                await handle.result(timeout=1)
            with pytest.raises(ResultUnavailable, match="ignore_result"):
                await handle.status()


@pytest.mark.idle_extra_queue  # it counts what its worker did
async def test_tasks_whose_sender_has_closed_still_run_and_succeed(
    prefix: str, topology_cleanup: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The sender's reply queue is deleted when it closes: the worker's replies are returned
    # as unroutable, and the worker stops replying there instead of failing the tasks.
    app = App("gone", broker=BROKER, prefix=prefix)

    @app.task
    async def work(x: int) -> int:
        return x

    async with app:
        await asyncio.gather(*(work.delay(i) for i in range(50)))
    async with running_worker(app, concurrency=8) as worker:

        async def all_done() -> bool:
            return worker.counters.succeeded == 50

        await eventually(all_done, what="the 50 tasks to succeed")
    assert worker.counters.failed == worker.counters.dead_lettered == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "taskq" in r.name]
