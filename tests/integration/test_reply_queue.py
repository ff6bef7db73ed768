"""AMQP results survive dropped connections: the reply queue outlives a reconnect.

Each open App has a durable reply queue with ``x-expires``: replies published while the client
or the worker reconnects wait in it. When the queue did expire (the client was away longer
than ``reply_queue_ttl``), waiting callers learn it as soon as the client is back, instead of
waiting out their timeout.
"""

from __future__ import annotations

import asyncio
import random

import aio_pika
import aiormq
import pytest

from taskq import App, ResultUnavailable
from tests.broker_control import close_connections, queue_names
from tests.support import BROKER, broker_proxy, eventually, running_worker


async def _queue_exists(name: str) -> bool:
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        await channel.declare_queue(name, passive=True)
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def test_every_caller_gets_its_result_when_all_connections_are_closed_mid_run(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App(f"rq-{prefix}", broker=BROKER, prefix=prefix)

    @app.task
    async def work(tag: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return tag

    rng = random.Random(7)
    async with app, running_worker(app, concurrency=32, name=f"w-{prefix}") as worker:
        handles = [await work.delay(i, rng.uniform(0.1, 1.5)) for i in range(150)]
        waits = [asyncio.ensure_future(h.result(timeout=90)) for h in handles]

        async def some_running() -> bool:
            return len(worker.active) >= 10 and worker.counters.succeeded >= 10

        await eventually(some_running, what="tasks in flight and some done")
        in_flight = len(worker.active)
        # Client and worker, publishing and consuming: every connection of this test.
        assert await close_connections(prefix) == 4
        results = await asyncio.gather(*waits)
    assert results == list(range(150))
    assert in_flight >= 10


async def test_closing_the_app_deletes_its_reply_queue(prefix: str) -> None:
    app = App("rq", broker=BROKER, prefix=prefix)
    async with app:
        name = app.store.reply_to()
        assert name is not None and await _queue_exists(name)
    assert not await _queue_exists(name)


@pytest.mark.idle_extra_queue  # it counts what its worker did
@pytest.mark.slow
async def test_waiters_learn_at_once_when_the_reply_queue_expired_while_away(
    prefix: str, topology_cleanup: set[str]
) -> None:
    worker_app = App("rq-worker", broker=BROKER, prefix=prefix)
    release = asyncio.Event()

    @worker_app.task
    async def held(tag: int) -> int:
        await release.wait()
        return tag

    async with broker_proxy() as proxy:
        client = App(
            "rq-client",
            broker=proxy.amqp_url(),
            prefix=prefix,
            reply_queue_ttl=1.0,
        )
        async with running_worker(worker_app, concurrency=4) as worker, client:
            reply_queue = client.store.reply_to()
            assert reply_queue is not None
            handles = [await client.send("held", i) for i in range(3)]
            waits = [asyncio.ensure_future(h.result(timeout=300)) for h in handles]

            async def all_running() -> bool:
                return len(worker.active) == 3

            await eventually(all_running, what="3 tasks running")
            proxy.refuse()  # the client is away: its reply queue has no consumer now

            async def expired() -> bool:
                # Listed, not declared: a passive declare would renew the queue's lease.
                return reply_queue not in await asyncio.to_thread(queue_names, prefix)

            await eventually(expired, what="the reply queue to expire")
            release.set()  # the outcomes go to a queue that is gone: the broker drops them

            async def outcomes_sent() -> bool:
                return worker.counters.succeeded == 3

            await eventually(outcomes_sent, what="the worker to finish the tasks")
            proxy.restore()
            # Far sooner than the callers' 300 s timeout: as soon as the client is back.
            done, _ = await asyncio.wait(waits, timeout=60)
            assert len(done) == 3
            for wait in waits:
                with pytest.raises(ResultUnavailable, match="expired while this client"):
                    wait.result()
            # The client works again: a new task's result arrives.
            assert await (await client.send("held", 9)).result(timeout=30) == 9
