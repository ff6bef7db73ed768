"""One suite, run against every result store: what any store must do for a caller."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pydantic
import pytest
import redis.asyncio

from taskq import App, ResultTimeout, Retry, TaskFailed, TaskStatus, current
from tests.support import BROKER, eventually, running_worker

REDIS = os.environ.get("TASKQ_TEST_REDIS", "redis://127.0.0.1:6379/0")


async def delete_redis_keys(prefix: str, url: str = REDIS) -> int:
    """Delete every key of ``prefix`` (the Redis store's keys start with it); return how many."""
    client = redis.asyncio.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


class Point(pydantic.BaseModel):
    x: int
    y: int


class Gates:
    """Events the tasks wait on, so a test decides when a task may go on."""

    def __init__(self) -> None:
        self.go = asyncio.Event()


@pytest.fixture(params=["amqp", "redis"])
async def app(
    request: pytest.FixtureRequest, prefix: str, topology_cleanup: set[str]
) -> AsyncIterator[App]:
    results = "amqp" if request.param == "amqp" else REDIS
    app = App("contract", broker=BROKER, prefix=prefix, results=results)
    gates = Gates()
    app.gates = gates  # type: ignore[attr-defined]

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)

    @app.task
    async def mirror(p: Point) -> Point:
        return Point(x=p.y, y=p.x)

    @app.task
    async def gated(report: bool) -> str:
        if report:
            await current().progress(0.5, "half way")
        await gates.go.wait()
        return "done"

    @app.task
    async def flaky() -> int:
        if current().attempt == 1:
            raise Retry(delay=0, reason="first try fails")
        await gates.go.wait()
        return current().attempt

    yield app
    gates.go.set()
    await delete_redis_keys(prefix)


def gates_of(app: App) -> Gates:
    gates: Gates = app.gates  # type: ignore[attr-defined]
    return gates


async def test_send_and_result(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["add"].delay(4, 6)
        assert await handle.result(timeout=10) == 10
        info = await handle.info()
        assert info.status is TaskStatus.SUCCESS
        assert info.attempt == 1
        assert info.worker


async def test_failure_round_trip_with_traceback(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["boom"].delay("kaput")
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=10)
        assert failed.value.remote_type == "ValueError"
        assert failed.value.remote_message == "kaput"
        assert "raise ValueError(message)" in failed.value.remote_traceback
        info = await handle.info()
        assert info.status is TaskStatus.FAILURE
        assert info.error is not None and info.error.type == "ValueError"


async def test_pydantic_model_result(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["mirror"].delay(Point(x=1, y=2))
        result = await handle.result(timeout=10)
        assert isinstance(result, Point)
        assert result == Point(x=2, y=1)


async def test_status_progression(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["gated"].delay(False)
        assert await handle.status() in (TaskStatus.PENDING, TaskStatus.STARTED)

        async def started() -> bool:
            return await handle.status() is TaskStatus.STARTED


        await eventually(started, what="STARTED")
        gates_of(app).go.set()
        assert await handle.result(timeout=10) == "done"
        assert await handle.status() is TaskStatus.SUCCESS


async def test_retry_moves_to_a_later_attempt(app: App) -> None:

    async with app, running_worker(app):
        handle = await app.tasks["flaky"].delay()

        async def second_attempt_running() -> bool:
            info = await handle.info()
            return info.status is TaskStatus.STARTED and info.attempt == 2

        await eventually(second_attempt_running, what="attempt 2 STARTED")
        gates_of(app).go.set()
        assert await handle.result(timeout=10) == 2
        info = await handle.info()
        assert (info.status, info.attempt) == (TaskStatus.SUCCESS, 2)


async def test_progress_visible_through_info(app: App) -> None:

    async with app, running_worker(app):
        handle = await app.tasks["gated"].delay(True)

        async def progressed() -> bool:
            info = await handle.info()
            return info.progress == 0.5 and info.progress_message == "half way"

        await eventually(progressed, what="progress 0.5")
        assert await handle.status() is TaskStatus.STARTED
        gates_of(app).go.set()
        assert await handle.result(timeout=10) == "done"


async def test_result_timeout(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["gated"].delay(False)
        with pytest.raises(ResultTimeout) as timed_out:
            await handle.result(timeout=0.3)  # the gate is closed: no outcome can come
        assert isinstance(timed_out.value, TimeoutError)
        assert handle.id in str(timed_out.value)
        gates_of(app).go.set()
        assert await handle.result(timeout=10) == "done"
