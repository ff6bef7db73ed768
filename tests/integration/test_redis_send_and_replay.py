"""What users do with the Redis store that crosses an outage or the DLQ: a send while Redis
is down, and replaying a task that failed for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from taskq import App, TaskFailed, TaskStatus, dlq
from taskq.results.redis import RedisResultStore
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.redis_support import OwnRedis, own_redis_server
from tests.support import BROKER, eventually, queue_length, running_worker

# one-queue only: the Redis store's send and replay paths are under test
pytestmark = pytest.mark.one_queue_only


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with own_redis_server() as server:
        yield server


@pytest.fixture
async def redis_cleanup(prefix: str) -> AsyncIterator[None]:
    yield
    await delete_redis_keys(prefix)


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_send_while_redis_is_down_goes_through_and_its_result_arrives(
    prefix: str, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    await own_redis.wait_up()
    ran: list[int] = []
    app = App("send-down", broker=BROKER, prefix=prefix, results=own_redis.url)

    @app.task
    async def double(i: int) -> int:
        ran.append(i)
        return 2 * i

    caplog.set_level(logging.WARNING, logger="taskq")
    async with app, running_worker(app) as worker:
        own_redis.stop()
        await own_redis.wait_up(False)
        handle = await double.delay(21)  # confirmed by RabbitMQ: Redis is not in the way
        waiting = asyncio.create_task(handle.result(timeout=60))

        async def pending_write_failed() -> bool:
            return f"could not record task {handle.id} as PENDING" in caplog.text

        async def worker_holds_it() -> bool:
            return worker.counters.received >= 1 and "result store unavailable" in caplog.text

        await eventually(pending_write_failed, what="the PENDING write to fail")
        await eventually(worker_holds_it, what="the worker to wait for the store")
        # A fresh task (taskq's own ID, sent once) cannot have run before: the worker runs it,
        # then holds the delivery unacked until its outcome can be recorded.
        assert ran == [21] and not waiting.done()
        assert worker.counters.succeeded == 0

        own_redis.start()
        await own_redis.wait_up()
        assert await waiting == 42
        info = await handle.info()
        assert (info.status, info.attempt, info.sent_at) == (TaskStatus.SUCCESS, 1, None)
    assert ran == [21]


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_a_dlq_replay_records_the_new_outcome(prefix: str) -> None:
    fixed = {"fragile": False}
    runs: list[int] = []
    app = App("replay", broker=BROKER, prefix=prefix, results=REDIS)

    @app.task
    async def fragile(n: int) -> int:
        runs.append(n)
        if not fixed["fragile"]:
            raise RuntimeError(f"fragile {n} broke")
        return n * 10

    raw = redis.asyncio.from_url(REDIS)
    dead = app.names.dead_queue("default")
    try:
        async with app, running_worker(app):
            handle = await fragile.delay(7)
            with pytest.raises(TaskFailed, match="fragile 7 broke"):
                await handle.result(timeout=30)

            async def dead_lettered() -> bool:
                return await queue_length(dead) == 1

            await eventually(dead_lettered, what="the failed task in .dead")

            fixed["fragile"] = True
            select = dlq.selector([handle.id])
            replayed = await dlq.replay(app.sender, "default", select)
            assert [d.task_id for d in replayed] == [handle.id]
            assert await handle.result(timeout=30) == 70  # the new outcome, not the old one
            info = await handle.info()
            assert (info.status, info.attempt, info.error) == (TaskStatus.SUCCESS, 1, None)
            store = app.store
            assert isinstance(store, RedisResultStore)
            assert await raw.hget(store.key(handle.id), "terminal_writes") == b"1"
            assert await queue_length(dead) == 0
    finally:
        await raw.aclose()
    assert runs == [7, 7]
