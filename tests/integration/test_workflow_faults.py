"""A chord through worker SIGKILLs, a broker restart and a result-store restart: its callback
runs exactly once, with every result in order.

Real ``taskq-worker`` processes; one is SIGKILLed (and replaced) five times while the members
run, so that members are redelivered and run twice, and joins are retried. Then the broker
restarts, as the workers and the client see it: they reach RabbitMQ through a TCP proxy the
test owns, which drops every connection and refuses new ones for a while (unacked deliveries
go back to the queue, unconfirmed publishes must be sent again; the shared RabbitMQ itself is
never stopped). Then the result store restarts: a redis-server of the test's own (AOF on, so
that what it confirmed survives), stopped and started again. The last member retries until
the faults are over, so that every fault lands before the join ends. The runs of members and
callback are counted in the shared Redis, outside the store that restarts.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio

from taskq import App, codec
from taskq.workflow import chord
from tests.apps.workflow_app import COUNTS_ENV, collect, held, member, runs_key
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.redis_support import OwnRedis, own_redis_server
from tests.support import WorkerProcess, broker_proxy, eventually
from tests.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.one_queue_only,
    pytest.mark.slow,  # about a minute: 2,000 members, five worker processes started
    pytest.mark.timeout(300),  # its own waits (120 s for the result) say what went wrong first
    pytest.mark.usefixtures("topology_cleanup"),
]

MEMBERS = int(os.environ.get("TASKQ_TEST_CHORD_MEMBERS", "2000"))
KILLS = 5
WORK = 0.5  # seconds per member: the members still run when the last fault comes
BROKER_DOWN = 2.0  # seconds the proxy refuses connections: the broker's restart


async def restart_broker(proxy: TcpProxy) -> None:
    """Drop every connection to the broker and refuse new ones for ``BROKER_DOWN`` seconds."""
    proxy.refuse()
    try:
        await asyncio.sleep(BROKER_DOWN)  # the outage itself, not a wait for something
    finally:
        proxy.restore()


async def restart_store(store: OwnRedis) -> None:
    """Stop the result store's redis-server (clean shutdown) and start it again."""
    store.stop()
    await store.wait_up(False)
    store.start()
    await store.wait_up()


def start_worker(prefix: str, broker: str, results: str) -> WorkerProcess:
    env = {"TASKQ_BROKER": broker, "TASKQ_RESULTS": results, COUNTS_ENV: REDIS}
    return WorkerProcess("tests.apps.workflow_app:app", prefix, "-c", "20", env=env)


async def test_a_chord_calls_back_once_through_kills_and_restarts(prefix: str) -> None:
    counts = redis.asyncio.from_url(REDIS)
    workers: list[WorkerProcess] = []
    try:
        async with broker_proxy() as proxy:
            with own_redis_server() as store:
                await store.wait_up()
                await run_chord(prefix, proxy, store, workers, counts)
    finally:
        for worker in workers:
            worker.kill()
        await delete_redis_keys(prefix)
        await counts.aclose()


async def run_chord(
    prefix: str,
    proxy: TcpProxy,
    store: OwnRedis,
    workers: list[WorkerProcess],
    counts: redis.asyncio.Redis,
) -> None:
    broker = proxy.amqp_url()
    workers += [start_worker(prefix, broker, store.url) for _ in range(3)]
    for worker in workers:
        await worker.wait_ready(60)

    async def kill(number: int) -> None:
        doomed = workers.pop(number % len(workers))
        doomed.signal(signal.SIGKILL)
        await doomed.wait_exit()
        doomed.kill()
        workers.append(start_worker(prefix, broker, store.url))

    async def broker_restart() -> None:
        for worker in workers:  # a worker that cannot reach the broker at its start exits
            await worker.wait_ready(60)
        await restart_broker(proxy)

    faults: list[Callable[[], Awaitable[None]]] = [
        *(functools.partial(kill, k) for k in range(1, KILLS + 1)),
        broker_restart,
        functools.partial(restart_store, store),
    ]
    async with App("wfapp", broker=broker, prefix=prefix, results=store.url) as app:
        # The last member waits for the gate: every fault lands while the chord runs.
        members = [*(member.s(i, WORK) for i in range(MEMBERS - 1)), held.s(MEMBERS - 1)]
        handle = await chord(members, collect.s()).delay(app=app)
        for number, fault in enumerate(faults, 1):
            goal = number * MEMBERS // (len(faults) + 1)

            async def progressed(goal: int = goal) -> bool:
                return int(await counts.get(runs_key(prefix, "member")) or 0) >= goal

            await eventually(progressed, timeout=60, what=f"{goal} members before fault {number}")
            await fault()
        await counts.set(runs_key(prefix, "gate"), 1)
        assert await handle.result(timeout=120) == MEMBERS

        exited = [w.output()[-3000:] for w in workers if w.process.poll() is not None]
        assert not exited, "a worker exited:\n" + "\n".join(exited)
    runs = await counts.lrange(runs_key(prefix, "callback"), 0, -1)
    assert [codec.unpack(v) for v in runs] == [list(range(MEMBERS))]
    assert int(await counts.get(runs_key(prefix, "member")) or 0) >= MEMBERS
