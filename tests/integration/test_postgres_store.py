"""What only the PostgreSQL store does: its schema and versions, the TTL cleanup, one
listening connection for thousands of waiters, notifications too large for a payload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from taskq import App, ConfigurationError, ResultUnavailable, TaskState, TaskStatus
from taskq.results.postgres import PostgresResultStore
from taskq.results.postgres_schema import VERSION
from tests.postgres_support import POSTGRES, count_rows, drop_tables, table_of
from tests.redis_support import free_port
from tests.support import BROKER, WorkerProcess


@pytest.fixture
async def table() -> AsyncIterator[str]:
    name = f"tq{uuid.uuid4().hex[:12]}_results"
    yield name
    await drop_tables(name)


@pytest.fixture
async def sql() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(POSTGRES)
    yield connection
    await connection.close()


def make_store(table: str, url: str = POSTGRES, **options: object) -> PostgresResultStore:
    return PostgresResultStore(url, table=table, **options)  # type: ignore[arg-type]


async def test_the_schema_is_created_once_versioned_and_upgraded(
    table: str, sql: asyncpg.Connection
) -> None:
    stores = [make_store(table) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))  # first use, all at once
    for store in stores:
        await store.close()
    rows = await sql.fetch(f'SELECT version, compatible_from FROM "{table}_schema"')
    assert [tuple(row) for row in rows] == [(VERSION, 1)]
    indexes = await sql.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", table)
    assert any("(task_id)" in i["indexdef"] for i in indexes)  # the primary key: lookups
    assert any("(expires_at)" in i["indexdef"] for i in indexes)  # the cleanup

    await sql.execute(f'UPDATE "{table}_schema" SET version = 0')  # an older schema
    await sql.execute(f'DROP INDEX "{table}_expires"')
    store = make_store(table)
    await store.open()
    await store.close()
    assert await sql.fetchval(f'SELECT version FROM "{table}_schema"') == VERSION
    assert await sql.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = $1",
                              f"{table}_expires") == 1  # fmt: skip

    # A newer taskq's schema: usable if it says so, refused otherwise.
    await sql.execute(f'UPDATE "{table}_schema" SET version = {VERSION + 1}')
    store = make_store(table)
    await store.open()
    await store.close()
    await sql.execute(
        f'UPDATE "{table}_schema" SET version = {VERSION + 1}, compatible_from = {VERSION + 1}'
    )
    with pytest.raises(ConfigurationError, match="upgrade taskq"):
        await make_store(table).open()


async def test_a_version_1_table_is_upgraded_to_take_cancelled(
    table: str, sql: asyncpg.Connection
) -> None:
    store = make_store(table)
    await store.open()
    await store.close()
    # Back to version 1: its CHECK refuses CANCELLED.
    await sql.execute(f'UPDATE "{table}_schema" SET version = 1')
    await sql.execute(
        f"""ALTER TABLE "{table}" DROP CONSTRAINT "{table}_status_check",
            ADD CONSTRAINT "{table}_status_check" CHECK (status IN ('PENDING', 'STARTED',
            'RETRYING', 'SUCCESS', 'FAILURE'))"""
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await sql.execute(f"INSERT INTO \"{table}\" (task_id, status) VALUES ('x', 'CANCELLED')")
    store = make_store(table)
    await store.open()
    try:
        await store.record(TaskState("t1", TaskStatus.CANCELLED, "add", 0), reply_to=None)
        state = await store.get("t1")
        assert state is not None and state.status is TaskStatus.CANCELLED
    finally:
        await store.close()
    assert await sql.fetchval(f'SELECT version FROM "{table}_schema"') == VERSION


async def test_expired_rows_are_deleted_in_batches_around_locked_ones(
    table: str, sql: asyncpg.Connection
) -> None:
    store = make_store(table, result_ttl=3600)
    await store.open()
    try:
        await store.record(TaskState("kept", TaskStatus.SUCCESS, "t"), reply_to=None)
        await sql.execute(
            f"""INSERT INTO "{table}" (task_id, status, expires_at)
                SELECT 'old' || g, 'SUCCESS', now() - interval '1 s'
                FROM generate_series(1, 1200) g"""
        )
        locker = await asyncpg.connect(POSTGRES)
        try:
            async with locker.transaction():  # a writer holds one expired row
                await locker.execute(f"""SELECT 1 FROM "{table}" WHERE task_id = 'old1'
                                         FOR UPDATE""")
                async with asyncio.timeout(30):  # skipped, not waited for
                    assert await store.delete_expired(batch=500) == 1199
        finally:
            await locker.close()
        assert await store.delete_expired(batch=500) == 1
        assert await count_rows(table) == 1
        kept = await store.get("kept")
        assert kept is not None and (kept.task_id, kept.status) == ("kept", TaskStatus.SUCCESS)
    finally:
        await store.close()


async def test_thousands_of_waiters_share_one_listening_connection(
    table: str, sql: asyncpg.Connection
) -> None:
    """5,000 callers wait on one store while another records their outcomes: each gets its
    own, and the waiting store holds no more connections than its pool plus one."""
    app_name = f"tq-wait-{uuid.uuid4().hex[:8]}"
    waiter = make_store(table, f"{POSTGRES}?application_name={app_name}", pool_size=4)
    writer = make_store(table, pool_size=8)
    await waiter.open()
    await writer.open()
    ids = [f"t{i}" for i in range(5000)]
    try:
        waits = [asyncio.ensure_future(waiter.wait(task_id, 300)) for task_id in ids]

        async def registered() -> bool:
            query = f'SELECT count(*) FROM "{table}" WHERE $1 = ANY(waiters)'
            return await sql.fetchval(query, waiter.channel) == len(ids)

        async with asyncio.timeout(120):
            while not await registered():
                await asyncio.sleep(0.1)
        connections = await sql.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app_name
        )
        assert 1 < connections <= waiter.pool_size + 1
        sem = asyncio.Semaphore(32)

        async def record(task_id: str) -> None:
            async with sem:
                state = TaskState(task_id, TaskStatus.SUCCESS, "t", result=task_id)
                await writer.record(state, reply_to=None)

        await asyncio.gather(*(record(task_id) for task_id in ids))
        states = await asyncio.gather(*waits)
        assert [state.result for state in states] == ids
    finally:
        await waiter.close()
        await writer.close()


async def test_a_state_too_large_to_notify_is_read_by_its_waiter(table: str) -> None:
    waiter, writer = make_store(table), make_store(table)
    await waiter.open()
    await writer.open()
    try:
        waiting = asyncio.ensure_future(waiter.wait("big", 30))

        async def registered() -> bool:
            return await count_rows(table, "$1 = ANY(waiters)", waiter.channel) == 1

        async with asyncio.timeout(30):
            while not await registered():
                await asyncio.sleep(0.02)
        big = "x" * 20_000  # past PostgreSQL's 8,000-byte NOTIFY payload
        await writer.record(TaskState("big", TaskStatus.SUCCESS, "t", result=big), reply_to=None)
        assert (await waiting).result == big
    finally:
        await waiter.close()
        await writer.close()


async def test_a_terminal_write_is_counted_once_and_reset_starts_afresh(
    table: str, sql: asyncpg.Connection
) -> None:
    store = make_store(table)
    await store.open()
    try:
        for status in (TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.SUCCESS):
            state = TaskState("t", status, "t", result=f"{status.value} wins")
            await store.record(state, reply_to=None)
        query = f'SELECT terminal_writes FROM "{table}" WHERE task_id = $1'
        assert await sql.fetchval(query, "t") == 1
        assert (await store.wait("t", 5)).result == "SUCCESS wins"
        await store.reset("t")
        assert await store.get("t") is None
        await store.record(TaskState("t", TaskStatus.FAILURE, "t", 1), reply_to=None)
        assert await sql.fetchval(query, "t") == 1
    finally:
        await store.close()


async def test_postgres_down_at_start_is_a_clear_error(table: str) -> None:
    port = free_port()
    store = make_store(table, f"postgresql://postgres:s3cret@127.0.0.1:{port}/test")
    with pytest.raises(ResultUnavailable) as failed:
        await store.open()
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert "s3cret" not in str(failed.value)


@pytest.mark.slow
@pytest.mark.usefixtures("topology_cleanup")
async def test_taskq_worker_takes_the_store_from_its_settings(
    prefix: str, sql: asyncpg.Connection
) -> None:
    """``taskq-worker`` with TASKQ_RESULTS=postgresql://...: results land in the prefix's
    table, and the worker's pool follows ``--concurrency`` (8: at most 3 connections)."""
    app_name = f"tq-cli-{uuid.uuid4().hex[:8]}"
    url = f"{POSTGRES}?application_name={app_name}"
    worker = WorkerProcess("tests.apps.procapp:app", prefix, "--concurrency", "8",
                           env={"TASKQ_RESULTS": url})  # fmt: skip
    client = App("client", broker=BROKER, prefix=prefix, results=POSTGRES)
    try:
        await worker.wait_ready()
        async with client:
            handles = [await client.send("sleepy", 0.01, i) for i in range(40)]
            assert [await h.result(timeout=30) for h in handles] == list(range(40))
            query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            assert 1 <= await sql.fetchval(query, app_name) <= 3
        ids = [h.id for h in handles]
        ours = "status = 'SUCCESS' AND task_id = ANY($1)"  # not the noise of two-queues
        assert await count_rows(table_of(prefix), ours, ids) == 40
    finally:
        worker.kill()
        await drop_tables(table_of(prefix))
