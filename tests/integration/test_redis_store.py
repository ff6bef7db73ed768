"""What only the durable (Redis) store does: lookups from other processes (PostgreSQL too),
TTL, no backwards moves, send-once by task ID, and surviving a Redis restart mid-run."""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
import redis.asyncio

from taskq import App, ResultUnavailable, TaskState, TaskStatus
from taskq.results.redis import RedisResultStore
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.postgres_support import POSTGRES, drop_tables, table_of
from tests.redis_support import OwnRedis, free_port, own_redis_server
from tests.support import BROKER, REPO, eventually, queue_length, running_worker


@pytest.fixture
async def redis_cleanup(prefix: str) -> AsyncIterator[None]:
    yield
    await delete_redis_keys(prefix)


@pytest.fixture
async def postgres_cleanup(prefix: str) -> AsyncIterator[None]:
    yield
    await drop_tables(table_of(prefix))


def make_app(prefix: str, calls: list[str], results: str = REDIS, **settings: object) -> App:
    app = App("redis-store", broker=BROKER, prefix=prefix, results=results, **settings)

    @app.task
    async def once(tag: str) -> str:
        calls.append(tag)
        return tag

    return app


def redis_store(app: App) -> RedisResultStore:
    store = app.store
    assert isinstance(store, RedisResultStore)
    return store


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup", "postgres_cleanup")
@pytest.mark.parametrize("results", [REDIS, POSTGRES], ids=["redis", "postgres"])
async def test_lookup_from_a_second_process(prefix: str, results: str) -> None:
    calls: list[str] = []
    app = make_app(prefix, calls, results)
    later_id = str(uuid.uuid4())
    async with app, running_worker(app):
        done = await app.tasks["once"].delay("before")
        assert await done.result(timeout=10) == "before"
        script = textwrap.dedent(
            f"""
            import asyncio, sys
            from taskq import App

            async def main() -> None:
                app = App("other", broker={BROKER!r}, prefix={prefix!r}, results={results!r})
                async with app:
                    for task_id in sys.argv[1:]:
                        print(await app.handle(task_id).result(timeout=30), flush=True)

            asyncio.run(main())
            """
        )
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            done.id,
            later_id,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            # The other process waits for a task nobody has sent yet; send it now.
            await app.tasks["once"].options(task_id=later_id).delay("after")
            out, err = await asyncio.wait_for(other.communicate(), timeout=45)
        finally:
            if other.returncode is None:
                other.kill()
                await other.wait()
    assert other.returncode == 0, err.decode()
    assert out.decode().split() == ["before", "after"]


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_ttl_expiry(prefix: str) -> None:
    calls: list[str] = []
    app = make_app(prefix, calls, result_ttl=1)
    client = redis.asyncio.from_url(REDIS)
    try:
        async with app, running_worker(app):
            handle = await app.tasks["once"].delay("short-lived")
            assert await handle.result(timeout=10) == "short-lived"
            key = redis_store(app).key(handle.id)
            assert 0 < await client.pttl(key) <= 1000

            async def gone() -> bool:
                return not await client.exists(key)

            await eventually(gone, timeout=10, interval=0.1, what="the result key to expire")
            assert await app.store.get(handle.id) is None
            assert await handle.status() is TaskStatus.PENDING  # unknown again
    finally:
        await client.aclose()


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_result_ttl_none_keeps_the_result(prefix: str) -> None:
    app = make_app(prefix, [], result_ttl=None)
    client = redis.asyncio.from_url(REDIS)
    try:
        async with app:
            await app.store.record(TaskState("kept", TaskStatus.SUCCESS, "once"), reply_to=None)
            assert await client.ttl(redis_store(app).key("kept")) == -1
    finally:
        await client.aclose()


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_a_status_never_moves_backwards(prefix: str) -> None:
    app = make_app(prefix, [])
    async with app:
        store = app.store
        updates = [
            TaskState("t", status, "once", attempt, worker="w")
            for attempt in (1, 2, 3)
            for status in (TaskStatus.PENDING, TaskStatus.STARTED, TaskStatus.RETRYING)
        ]
        updates.append(TaskState("t", TaskStatus.SUCCESS, "once", 2, result={"n": 1}))
        random.shuffle(updates)
        await asyncio.gather(*(store.record(u, reply_to=None) for u in updates))
        state = await store.get("t")
        assert state is not None
        assert (state.status, state.attempt, state.result) == (TaskStatus.SUCCESS, 2, {"n": 1})
        assert state.finished_at is not None

        await store.record(TaskState("t", TaskStatus.STARTED, "once", 9), reply_to=None)
        store.track("t", "once")  # a second send of the same ID

        async def tracked() -> TaskState | None:
            state = await store.get("t")
            return state if state is not None and state.sent_at is not None else None

        after = await eventually(tracked, what="the second send to be tracked")
        assert (after.status, after.attempt, after.result) == (TaskStatus.SUCCESS, 2, {"n": 1})


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_same_task_id_sent_twice_runs_once(prefix: str) -> None:
    calls: list[str] = []
    app = make_app(prefix, calls)
    task_id = f"order-{uuid.uuid4()}"
    async with app, running_worker(app, concurrency=1) as worker:
        first = await app.tasks["once"].options(task_id=task_id).delay("first")
        second = await app.tasks["once"].options(task_id=task_id).delay("second")
        assert await first.result(timeout=10) == "first"
        assert await second.result(timeout=10) == "first"  # the first result is kept

        async def both_handled() -> bool:
            return worker.counters.received >= 2 and not worker.active

        await eventually(both_handled, what="the second delivery to be handled")
        assert await queue_length(app.names.work_queue("default")) == 0
    assert calls == ["first"]


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_redelivered_successful_task_is_not_run_again(prefix: str) -> None:
    calls: list[str] = []
    app = make_app(prefix, calls)
    async with app:
        handle = await app.tasks["once"].delay("again?")
        # A worker takes the message, records SUCCESS, and dies before acking it.
        connection = await aio_pika.connect(BROKER)
        channel = await connection.channel()
        queue = await channel.declare_queue(app.names.work_queue("default"), passive=True)
        held = await queue.get(no_ack=False)
        assert held.message_id == handle.id
        done = TaskState(handle.id, TaskStatus.SUCCESS, "once", 1, result="recorded")
        await app.store.record(done, reply_to=None)
        await connection.close()  # the unacked message goes back, marked redelivered

        async with running_worker(app) as worker:
            assert await handle.result(timeout=10) == "recorded"

            async def skipped() -> bool:
                # the redelivery (counted and republished) and the republished copy (skipped)
                return worker.counters.received >= 2 and not worker.active

            await eventually(skipped, what="the redelivery to be handled")
            assert await queue_length(app.names.work_queue("default")) == 0
            assert await queue_length(app.names.dead_queue("default")) == 0
    assert calls == []


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_a_terminal_write_is_counted_once_and_published_to_registered_waiters(
    prefix: str,
) -> None:
    app = make_app(prefix, [], result_ttl=60)
    client = redis.asyncio.from_url(REDIS)
    try:
        async with app:
            store = redis_store(app)
            waiters = store.waiters_key("t")
            waiting = asyncio.ensure_future(app.handle("t").result(timeout=30))

            async def registered() -> bool:
                return bool(await client.sismember(waiters, store.channel))

            await eventually(registered, what="the waiter to register its channel")
            assert 0 < await client.pttl(waiters) <= 60_000  # expires like the task would
            for status in (TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.SUCCESS):
                state = TaskState("t", status, "once", result=f"{status.value} wins")
                await store.record(state, reply_to=None)
            assert await waiting == "SUCCESS wins"
            assert await client.hget(store.key("t"), "terminal_writes") == b"1"
            assert not await client.exists(waiters)  # the terminal write consumed it

            # A finished task is read, not registered for.
            assert await app.handle("t").result(timeout=30) == "SUCCESS wins"
            assert not await client.exists(waiters)

            # A replay starts afresh: reset drops the count with the hash.
            await store.reset("t")
            await store.record(TaskState("t", TaskStatus.FAILURE, "once", 1), reply_to=None)
            assert await client.hget(store.key("t"), "terminal_writes") == b"1"
    finally:
        await client.aclose()


@pytest.mark.usefixtures("topology_cleanup", "redis_cleanup")
async def test_an_error_reply_from_redis_is_result_unavailable(prefix: str) -> None:
    app = make_app(prefix, [])
    client = redis.asyncio.from_url(REDIS)
    try:
        async with app:
            store = redis_store(app)
            await client.set(store.key("wrong"), "not a hash")  # WRONGTYPE for every call
            with pytest.raises(ResultUnavailable, match="WRONGTYPE"):
                await store.get("wrong")
            with pytest.raises(ResultUnavailable, match="WRONGTYPE"):
                await store.record(TaskState("wrong", TaskStatus.STARTED, "once"), reply_to=None)
            with pytest.raises(ResultUnavailable, match="WRONGTYPE") as waited:
                await app.handle("wrong").result(timeout=1)
            assert "gave up waiting" in str(waited.value)
    finally:
        await client.aclose()


@pytest.mark.usefixtures("topology_cleanup")
async def test_redis_down_at_start_is_a_clear_error(prefix: str) -> None:
    port = free_port()
    app = make_app(prefix, [], results=f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(ResultUnavailable) as failed:
        await app.open()
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert "s3cret" not in str(failed.value)
    assert not app.is_open


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with own_redis_server() as server:
        yield server


@pytest.mark.idle_extra_queue  # it counts what its worker does: no noise on the extra queue
@pytest.mark.usefixtures("topology_cleanup")
async def test_redis_restart_mid_run_loses_nothing(
    prefix: str, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    await own_redis.wait_up()
    gate = asyncio.Event()
    ran: list[int] = []
    app = App("restart", broker=BROKER, prefix=prefix, results=own_redis.url)

    @app.task
    async def work(i: int) -> int:
        await gate.wait()
        ran.append(i)
        return i * 10

    caplog.set_level(logging.WARNING, logger="taskq")
    async with app, running_worker(app, concurrency=4) as worker:
        handles = [await work.delay(i) for i in range(20)]
        # Callers wait through the outage (their pub/sub connection drops too).
        waiting = asyncio.ensure_future(asyncio.gather(*(h.result(timeout=40) for h in handles)))

        async def four_running() -> bool:
            return len(worker.active) == 4

        await eventually(four_running, what="4 tasks running")
        own_redis.stop()
        await own_redis.wait_up(False)
        gate.set()  # the running tasks finish while Redis is down: their records must wait

        async def worker_retrying() -> bool:
            return "result store unavailable" in caplog.text

        await eventually(worker_retrying, what="the worker to retry recording")
        assert worker.counters.succeeded == 0
        own_redis.start()
        await own_redis.wait_up()
        results = await waiting
        assert results == [i * 10 for i in range(20)]
        statuses = {(await h.info()).status for h in handles}
        assert statuses == {TaskStatus.SUCCESS}
        assert await queue_length(app.names.work_queue("default")) == 0
        assert await queue_length(app.names.dead_queue("default")) == 0
    assert sorted(ran) == list(range(20))
