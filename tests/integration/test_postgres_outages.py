"""PostgreSQL unreachable, through a TCP proxy the test controls (never by stopping the shared
server): callers waiting get their result once it is back, or ResultUnavailable/ResultTimeout
at their deadline, never an internal error; a worker waits and retries recording before it
acks, and loses nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from taskq import App, ResultUnavailable, TaskState, TaskStatus
from taskq.results.postgres import PostgresResultStore
from tests.postgres_support import (
    POSTGRES,
    POSTGRES_PORT,
    count_rows,
    drop_tables,
    table_of,
    via_proxy,
)
from tests.support import BROKER, eventually, queue_length, running_worker
from tests.tcp_proxy import TcpProxy, tcp_proxy


@pytest.fixture
async def proxy(prefix: str) -> AsyncIterator[TcpProxy]:
    async with tcp_proxy(POSTGRES_PORT) as proxy:
        yield proxy
    await drop_tables(table_of(prefix))


def postgres_store(app: App) -> PostgresResultStore:
    store = app.store
    assert isinstance(store, PostgresResultStore)
    return store


def apps(prefix: str, client_url: str, worker_url: str, gate: asyncio.Event,
         **settings: Any) -> tuple[App, App]:  # fmt: skip
    """A client App and a worker App with the task ``gated(i)``: it waits for ``gate``,
    then returns ``i * 10``."""
    made = []
    for name, url in (("client", client_url), ("worker", worker_url)):
        app = App(name, broker=BROKER, prefix=prefix, results=url, **settings)

        @app.task(name="gated")
        async def gated(i: int) -> int:
            await gate.wait()
            return i * 10

        made.append(app)
    return made[0], made[1]


async def waiting_on(table: str, channel: str, ids: list[str]) -> int:
    return await count_rows(table, "$1 = ANY(waiters) AND task_id = ANY($2)", channel, ids)


async def all_succeeded(table: str, ids: list[str]) -> bool:
    return await count_rows(table, "status = 'SUCCESS' AND task_id = ANY($1)", ids) == len(ids)


@pytest.mark.usefixtures("topology_cleanup")
async def test_waiters_get_every_result_while_the_connection_is_cut_again_and_again(
    prefix: str, proxy: TcpProxy
) -> None:
    gate = asyncio.Event()
    client, served = apps(prefix, via_proxy(proxy.port), POSTGRES, gate)
    table = table_of(prefix)
    async with client, served, running_worker(served, concurrency=50):
        store = postgres_store(client)
        for round_ in range(3):
            gate.clear()
            values = [round_ * 100 + i for i in range(40)]
            handles = [await client.tasks["gated"].delay(v) for v in values]
            ids = [h.id for h in handles]
            callers = [asyncio.create_task(h.result(timeout=60)) for h in handles]

            async def registered(ids: list[str] = ids) -> bool:
                return await waiting_on(table, store.channel, ids) == len(ids)

            await eventually(registered, what="every caller to register")
            # Cut, and keep the client cut off while every outcome is notified: those
            # notifications reach no one. The listener must notice and have everyone re-read.
            proxy.refusing = True
            assert proxy.cut() >= 1
            gate.set()

            async def recorded(ids: list[str] = ids) -> bool:
                return await all_succeeded(table, ids)

            await eventually(recorded, what="the worker to record every outcome")
            assert not any(caller.done() for caller in callers)
            proxy.restore()
            outcomes = await asyncio.gather(*callers, return_exceptions=True)
            assert outcomes == [v * 10 for v in values], f"round {round_}"


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_deadline_that_passes_while_postgres_is_unreachable(
    prefix: str, proxy: TcpProxy
) -> None:
    port = proxy.port
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/test"
    app = App("deadline", broker=BROKER, prefix=prefix, results=url)
    async with app:
        store = postgres_store(app)
        waiter = asyncio.create_task(app.handle("never").result(timeout=3))

        async def registered() -> bool:
            return await waiting_on(table_of(prefix), store.channel, ["never"]) == 1

        await eventually(registered, what="the waiter to register")
        proxy.refuse()
        with pytest.raises(ResultUnavailable) as gave_up:
            await waiter
        failures: list[BaseException] = [gave_up.value]
        calls = (
            store.get("never"),
            store.record(TaskState("never", TaskStatus.STARTED, "x"), reply_to=None),
            store.reset("never"),
        )
        for call in calls:
            with pytest.raises(ResultUnavailable) as failed:
                await call
            failures.append(failed.value)
        for failure in failures:
            assert f"127.0.0.1:{port}" in str(failure)
            assert "s3cret" not in str(failure)
        proxy.restore()
        assert await store.get("never") is None  # it answers again


@pytest.mark.idle_extra_queue  # it counts everything its worker does
@pytest.mark.usefixtures("topology_cleanup")
async def test_the_worker_retries_recording_until_postgres_is_back_and_loses_nothing(
    prefix: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    gate, ran = asyncio.Event(), list[int]()
    client = App("client", broker=BROKER, prefix=prefix, results=POSTGRES)
    served = App("worker", broker=BROKER, prefix=prefix, results=via_proxy(proxy.port))
    for app in (client, served):

        @app.task(name="work")
        async def work(i: int) -> int:
            await gate.wait()
            ran.append(i)
            return i * 10

    caplog.set_level(logging.WARNING, logger="taskq")
    table = table_of(prefix)
    async with client, served, running_worker(served, concurrency=4) as worker:
        handles = [await client.tasks["work"].delay(i) for i in range(20)]
        waiting = asyncio.ensure_future(asyncio.gather(*(h.result(timeout=60) for h in handles)))

        async def four_running() -> bool:
            return len(worker.active) == 4

        await eventually(four_running, what="4 tasks running")
        proxy.refuse()  # the running tasks finish while PostgreSQL is unreachable
        gate.set()

        async def worker_retrying() -> bool:
            return "result store unavailable" in caplog.text

        await eventually(worker_retrying, what="the worker to retry recording")
        assert worker.counters.succeeded == 0  # nothing acked without its record
        assert not waiting.done()
        proxy.restore()
        assert await waiting == [i * 10 for i in range(20)]
        assert {(await h.info()).status for h in handles} == {TaskStatus.SUCCESS}
        assert await queue_length(served.names.work_queue("default")) == 0
        assert await queue_length(served.names.dead_queue("default")) == 0
    assert sorted(ran) == list(range(20))
    ids = [h.id for h in handles]
    assert await count_rows(table, "terminal_writes = 1 AND task_id = ANY($1)", ids) == 20


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_silent_listen_connection_is_noticed_by_its_check(
    prefix: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that stays open but carries nothing (no FIN, no RST) is found out by the
    listener's check query; the caller still gets its result, and LISTENs again."""
    gate = asyncio.Event()
    client, served = apps(prefix, via_proxy(proxy.port), POSTGRES, gate, connect_timeout=2)
    caplog.set_level(logging.DEBUG, logger="taskq.results")
    async with client, served, running_worker(served):
        store = postgres_store(client)
        handle = await client.tasks["gated"].delay(7)
        caller = asyncio.create_task(handle.result(timeout=60))

        async def registered() -> bool:
            return await waiting_on(table_of(prefix), store.channel, [handle.id]) == 1

        await eventually(registered, what="the caller to register")
        assert proxy.freeze() >= 1
        gate.set()  # its outcome is notified into the black hole
        assert await caller == 70

        async def listening_again() -> bool:
            # A backend's last query: LISTEN until the first check, IDLE s after it.
            connection = await asyncpg.connect(POSTGRES)
            try:
                query = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1"
                return bool(await connection.fetchval(query, f"%LISTEN%{store.channel}%"))
            finally:
                await connection.close()

        async def noticed() -> bool:
            return "PostgreSQL LISTEN connection failed" in caplog.text

        await eventually(noticed, timeout=45, what="the listener to give up on the connection")
        await eventually(listening_again, what="the listener to LISTEN again")
