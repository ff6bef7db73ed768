"""Callers waiting on the Redis store while Redis goes away: they get their result once it is
back, or ResultUnavailable/ResultTimeout at their deadline, never an internal error.

Outages are made on a private redis-server (stopped and started again) or through a TCP proxy
the test controls; the shared Redis is only read and written, never stopped.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio

from taskq import App, ResultUnavailable, TaskHandle, TaskState, TaskStatus
from taskq.results.redis import RedisResultStore
from taskq.transport import make_transport
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.redis_support import OwnRedis, own_redis_server
from tests.support import BROKER, eventually, running_worker
from tests.tcp_proxy import TcpProxy

# one-queue only: the store's outages, not the worker's queues, are under test
pytestmark = pytest.mark.one_queue_only

OUTAGE = 3.0  # seconds Redis stays down: the fault itself, not a wait for a server


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with own_redis_server(password="s3cret") as server:
        yield server


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(int(REDIS.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def redis_store(app: App) -> RedisResultStore:
    store = app.store
    assert isinstance(store, RedisResultStore)
    return store


def proxied_apps(
    prefix: str, proxy: TcpProxy, gate: asyncio.Event, **settings: Any
) -> tuple[App, App]:
    """A client App that reaches Redis through ``proxy`` and a worker App that goes straight
    to it (so outcomes are recorded and published while the client is cut off), both with
    the task ``gated(i)``: it waits for ``gate``, then returns ``i`` 5 ms later."""
    client = App("client", broker=BROKER, prefix=prefix, results=proxy.redis_url(), **settings)
    served = App("worker", broker=BROKER, prefix=prefix, results=REDIS)
    for app in (client, served):

        @app.task(name="gated")
        async def gated(i: int) -> int:
            await gate.wait()
            await asyncio.sleep(0.005)
            return i

    return client, served


async def subscribers(raw: redis.asyncio.Redis, channel: str) -> int:
    """How many connections are subscribed to ``channel``."""
    counts = dict(await raw.pubsub_numsub(channel))
    return int(counts[channel.encode()])


async def settled(tasks: list[asyncio.Task[int]]) -> list[object]:
    """Each caller's value, or the exception it got instead."""
    return list(await asyncio.gather(*tasks, return_exceptions=True))


@pytest.mark.usefixtures("topology_cleanup")
async def test_callers_get_every_result_through_redis_restarts(
    prefix: str, own_redis: OwnRedis
) -> None:
    """300 callers per round send a 20 ms task and wait for it: one after the other before
    and during a 3 s outage, then the rest at once as Redis comes back, so that some start
    waiting while the listener reconnects. Every caller gets its value."""
    await own_redis.wait_up()
    app = App("outage", broker=BROKER, prefix=prefix, results=own_redis.url)

    @app.task
    async def nap(i: int) -> int:
        await asyncio.sleep(0.02)
        return i

    async def call(value: int) -> int:
        handle = await nap.delay(value)
        return await handle.result(timeout=60)

    async with app, running_worker(app, concurrency=8):
        for round_ in range(3):
            callers: list[asyncio.Task[int]] = []
            restarted = asyncio.Event()
            fault = asyncio.create_task(restart_during(own_redis, callers, restarted))
            values = [round_ * 1000 + i for i in range(300)]
            for value in values:
                callers.append(asyncio.create_task(call(value)))
                # Paced across the outage; the rest in a burst as Redis comes back, when the
                # listener reconnects.
                await asyncio.sleep(0 if restarted.is_set() else 0.015)
            seen = await fault
            assert await settled(callers) == values, f"round {round_}"
            # The outage met callers waiting, callers starting, and callers after it.
            assert seen["waiting at the stop"] > 0
            assert seen["started before the start"] > seen["started before the stop"]
            assert len(values) > seen["started before the start"]


async def restart_during(
    server: OwnRedis, callers: list[asyncio.Task[int]], restarted: asyncio.Event
) -> dict[str, int]:
    """Once 40 callers started, stop ``server`` for OUTAGE s and start it again (setting
    ``restarted``); return how many callers were waiting and had started at each step."""

    async def forty() -> bool:
        return len(callers) >= 40

    await eventually(forty, what="40 callers")
    server.stop()
    seen = {
        "waiting at the stop": sum(not caller.done() for caller in callers),
        "started before the stop": len(callers),
    }
    await server.wait_up(False)
    await asyncio.sleep(OUTAGE)
    server.start()
    seen["started before the start"] = len(callers)
    restarted.set()
    await server.wait_up()
    return seen


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_deadline_that_passes_while_redis_is_down(prefix: str, own_redis: OwnRedis) -> None:
    await own_redis.wait_up()
    app = App("deadline", broker=BROKER, prefix=prefix, results=own_redis.url)
    async with app:
        store = redis_store(app)
        raw = redis.asyncio.from_url(own_redis.url)
        try:
            waiter = asyncio.create_task(app.handle("never").result(timeout=3))

            async def registered() -> bool:
                return bool(await raw.sismember(store.waiters_key("never"), store.channel))

            await eventually(registered, what="the waiter to register")
        finally:
            await raw.aclose()
        own_redis.stop()
        with pytest.raises(ResultUnavailable) as gave_up:
            await waiter
        failures: list[BaseException] = [gave_up.value]
        with pytest.raises(ResultUnavailable) as failed:
            await store.get("never")
        failures.append(failed.value)
        with pytest.raises(ResultUnavailable) as failed:
            await store.record(TaskState("never", TaskStatus.STARTED, "x"), reply_to=None)
        failures.append(failed.value)
        with pytest.raises(ResultUnavailable) as failed:
            await store.reset("never")
        failures.append(failed.value)
        for failure in failures:
            assert f"127.0.0.1:{own_redis.port}" in str(failure)
            assert "s3cret" not in str(failure)


@pytest.mark.usefixtures("topology_cleanup")
async def test_waiters_keep_getting_results_while_the_connection_is_cut_again_and_again(
    prefix: str, proxy: TcpProxy
) -> None:
    gate = asyncio.Event()
    client, served = proxied_apps(prefix, proxy, gate)
    raw = redis.asyncio.from_url(REDIS)
    try:
        async with client, served, running_worker(served, concurrency=50):
            store = redis_store(client)
            for round_ in range(4):
                gate.clear()
                values = [round_ * 100 + i for i in range(40)]
                handles = [await client.tasks["gated"].delay(v) for v in values]
                callers = [asyncio.create_task(h.result(timeout=60)) for h in handles]

                async def all_registered(handles: list[TaskHandle[int]] = handles) -> bool:
                    keys = [store.waiters_key(h.id) for h in handles]
                    return await raw.exists(*keys) == len(keys)

                await eventually(all_registered, what="every caller to register")
                # Cut, and keep the client cut off while every outcome is published: those
                # publishes reach no one. The listener must notice and have everyone re-read.
                proxy.refusing = True
                assert proxy.cut() >= 1
                gate.set()

                async def all_recorded(handles: list[TaskHandle[int]] = handles) -> bool:
                    keys = [store.key(h.id) for h in handles]
                    statuses = [await raw.hget(key, "status") for key in keys]
                    return statuses == [b"SUCCESS"] * len(keys)

                await eventually(all_recorded, what="the worker to record every outcome")
                assert not any(caller.done() for caller in callers)
                proxy.refusing = False
                assert await settled(callers) == values, f"round {round_}"

                async def one_subscriber() -> bool:
                    return await subscribers(raw, store.channel) == 1

                await eventually(one_subscriber, what="the listener to subscribe again")
    finally:
        await raw.aclose()
        await delete_redis_keys(prefix)


@pytest.mark.usefixtures("topology_cleanup")
async def test_cuts_while_outcomes_are_published_lose_no_result(
    prefix: str, proxy: TcpProxy
) -> None:
    """A cut while outcomes are published (Redis itself stays up): no result is lost."""
    gate = asyncio.Event()
    gate.set()
    client, served = proxied_apps(prefix, proxy, gate)
    try:
        async with client, served, running_worker(served, concurrency=16):
            values = list(range(200))
            handles = [await client.tasks["gated"].delay(v) for v in values]
            callers = [asyncio.create_task(h.result(timeout=60)) for h in handles]
            cuts = 0
            while not all(caller.done() for caller in callers) and cuts < 20:
                cuts += proxy.cut() > 0
                await asyncio.sleep(0.05)  # spread the cuts over the run
            assert await settled(callers) == values
            assert cuts > 0
    finally:
        await delete_redis_keys(prefix)


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_silent_pubsub_connection_is_noticed_by_its_ping(
    prefix: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that stays open but carries nothing (no FIN, no RST) is found out by the
    listener's PING; the caller still gets its result, and one subscription is left."""
    gate = asyncio.Event()
    client, served = proxied_apps(prefix, proxy, gate, connect_timeout=2)
    caplog.set_level(logging.DEBUG, logger="taskq.results")
    raw = redis.asyncio.from_url(REDIS)
    try:
        async with client, served, running_worker(served):
            store = redis_store(client)
            handle = await client.tasks["gated"].delay(7)
            caller = asyncio.create_task(handle.result(timeout=60))

            async def registered() -> bool:
                return bool(await raw.exists(store.waiters_key(handle.id)))

            async def one_subscriber() -> bool:
                return await subscribers(raw, store.channel) == 1

            await eventually(registered, what="the caller to register")
            # Freeze only once the listener has subscribed: frozen during its handshake, it
            # fails on redis-py's read timeout instead, and its next connection is not frozen.
            await eventually(one_subscriber, what="the listener to subscribe")
            assert proxy.freeze() >= 1
            gate.set()  # its outcome is published into the black hole
            assert await caller == 7

            async def pinged_out() -> bool:
                return "no reply to PING" in caplog.text

            await eventually(pinged_out, timeout=45, what="the listener to give up on PING")
            await eventually(one_subscriber, what="the listener to subscribe again")
    finally:
        await raw.aclose()
        await delete_redis_keys(prefix)


async def test_closing_the_store_while_its_listener_connects_is_prompt(prefix: str) -> None:
    """The listener starts when a waiter first finds its task unfinished; closing the store
    while it is still connecting must end it (Python 3.11's wait_for can swallow the
    cancellation inside redis-py) and tell the waiter."""
    app = App("close", broker=BROKER, prefix=prefix, results=REDIS)
    for attempt in range(100):
        store = RedisResultStore(
            REDIS,
            make_transport(app.settings.transport_options()),
            result_ttl=app.settings.result_ttl,
        )
        await store.open()
        waiter = asyncio.create_task(store.wait("never", timeout=30))
        await asyncio.sleep(attempt % 50 * 0.0002)  # land the close at different points
        async with asyncio.timeout(15):  # a hang fails here; a slow machine does not
            await store.close()
        with pytest.raises(ResultUnavailable, match="closed"):
            await waiter


async def test_a_waiter_on_a_closed_store_is_told(prefix: str) -> None:
    app = App("closed", broker=BROKER, prefix=prefix, results=REDIS)
    store = RedisResultStore(
        REDIS, make_transport(app.settings.transport_options()), result_ttl=app.settings.result_ttl
    )
    raw = redis.asyncio.from_url(REDIS)
    await store.open()
    try:
        waiter = asyncio.create_task(store.wait(f"never-{uuid.uuid4()}", timeout=60))

        async def subscribed() -> bool:
            return await subscribers(raw, store.channel) == 1

        await eventually(subscribed, what="the listener to subscribe")
    finally:
        await store.close()
        await raw.aclose()
        await delete_redis_keys(prefix)
    with pytest.raises(ResultUnavailable, match="closed"):
        await waiter


@pytest.mark.usefixtures("topology_cleanup")
async def test_a_refused_subscription_is_retried_and_callers_still_get_results(
    prefix: str, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose Redis user may not subscribe (an ACL without channel rights) is told
    so by Redis on SUBSCRIBE: the listener ends that session with the reason and tries
    again later, and its callers get their results by reading the store meanwhile."""
    await own_redis.wait_up()
    admin = redis.asyncio.from_url(own_redis.url)
    await admin.execute_command("ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all",
                                "resetchannels")  # fmt: skip
    limited = f"redis://nochan:pw@127.0.0.1:{own_redis.port}/0"
    client = App("client", broker=BROKER, prefix=prefix, results=limited)
    served = App("worker", broker=BROKER, prefix=prefix, results=own_redis.url)
    for app in (client, served):

        @app.task(name="double")
        async def double(i: int) -> int:
            return 2 * i

    caplog.set_level(logging.WARNING, logger="taskq.results")
    try:
        async with client, served, running_worker(served):
            handles = [await client.tasks["double"].delay(i) for i in range(3)]
            assert [await h.result(timeout=30) for h in handles] == [0, 2, 4]

            async def refused_and_logged() -> bool:
                return "refused the subscription" in caplog.text

            await eventually(refused_and_logged, what="the refusal to be logged")
            assert not redis_store(client)._listener.subscribed
    finally:
        await admin.aclose()
