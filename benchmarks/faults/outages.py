"""Outages around the worker: connections force-closed, a broker restart, a result-store cut."""

from __future__ import annotations

import asyncio
import itertools
import random

from tests.support import eventually
from tests.tcp_proxy import TcpProxy

from . import broker
from .redis_server import private_redis
from .report import Row
from .run import Run
from .sizes import Sizes


async def connection_drop(sizes: Sizes) -> list[Row]:
    """One row per run, see ``connection_drop_once``."""
    return [await connection_drop_once(sizes, run) for run in range(1, sizes.drop_runs + 1)]


async def connection_drop_once(sizes: Sizes, seed: int) -> Row:
    """``drop_tasks`` tasks of 0.2-1.5 s with callers awaiting their results over the default
    AMQP store; once tasks run and some are done, the broker closes every connection of the
    run (worker and client, and only those)."""
    rng = random.Random(seed)
    n = sizes.drop_tasks
    async with Run(f"connections closed (run {seed})", concurrency=32) as run:
        await run.start_worker()
        work = run.client.tasks["work"]
        await run.send([(work, rng.uniform(0.2, 1.5), i) for i in range(n)])
        await run.until(
            lambda s: run.done(s) >= 10 and len(s.running(run.live_pids())) >= 10,
            "tasks running and done",
        )
        connections = await broker.connections_of(run.prefix)
        if len(connections) != 4:
            raise RuntimeError(f"expected 4 connections (worker and client), found {connections}")
        snapshot = run.ledger.read()
        run.fault()
        await broker.close_connections(connections, "taskq fault suite")
        run.notes.append(
            f"closed {len(connections)} connections with "
            f"{len(snapshot.running(run.live_pids()))} tasks running, {run.done(snapshot)} of "
            f"{n} done"
        )
        return await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)


async def broker_restart(sizes: Sizes) -> list[Row]:
    """``restart_tasks`` tasks of 50-300 ms; with a fifth done (the rest running or queued),
    ``rabbitmqctl stop_app``; the client sends ``sent_during_outage`` more while the broker is
    down; ``start_app``. The broker is started again whatever happens."""
    rng = random.Random(0)
    n = sizes.restart_tasks
    async with Run("broker restart", concurrency=16) as run:
        await run.start_worker()
        work = run.client.tasks["work"]
        await run.send([(work, rng.uniform(0.05, 0.3), i) for i in range(n)])
        await run.until(lambda s: run.done(s) >= n // 5, "a fifth of the tasks done")
        before = run.ledger.read()
        running = set(before.running(run.live_pids()))
        run.fault()
        async with broker.stopped():

            async def client_disconnected() -> bool:
                return not run.client.transport.connected

            await eventually(client_disconnected, what="the client to see the broker go")
            during = [
                asyncio.ensure_future(run.send([(work, 0.01, 10_000 + i)]))
                for i in range(sizes.sent_during_outage)
            ]
            # Down until the tasks that ran at the stop have finished: their outcomes meet a
            # broker that is gone.
            await run.until(lambda s: not running & set(s.running(run.live_pids())), "them")
        await eventually(broker.answers, timeout=120, what="RabbitMQ to accept connections")
        sends = await asyncio.gather(*during, return_exceptions=True)
        failed = [repr(s) for s in sends if isinstance(s, BaseException)]
        run.notes.append(
            f"stop_app with {len(before.running(run.live_pids()))} tasks running and "
            f"{n - run.done(before)} not done; {len(during) - len(failed)} of {len(during)} "
            "sends during the outage confirmed" + (f" (first error: {failed[0]})" if failed else "")
        )
        return [await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)]


async def store_outage(sizes: Sizes) -> list[Row]:
    """The Redis store on a private redis-server behind a proxy; ``outage_tasks`` tasks of
    10-50 ms, sent in batches as earlier ones finish, with callers waiting on each. ``cuts``
    times, the proxy drops every connection and refuses new ones for ``cut_seconds``; a batch
    is sent during each cut, so callers also start waiting while the store is unreachable."""
    rng = random.Random(0)
    async with private_redis() as port:
        proxy = TcpProxy(port)
        await proxy.start()
        try:
            url = f"redis://127.0.0.1:{proxy.port}/0"
            async with Run("result-store outage", results=url, concurrency=8) as run:
                await run.start_worker()
                work = run.client.tasks["work"]
                tags = itertools.count()

                async def send_batches(batches: int) -> None:
                    for _ in range(batches):
                        await run.send([(work, rng.uniform(0.01, 0.05), next(tags))
                                        for _ in range(_BATCH)])  # fmt: skip
                        ahead = len(run.confirmed) - 2 * run.concurrency
                        await run.until(lambda s, a=ahead: run.done(s) >= a, "earlier batches")

                per_stretch = max(1, sizes.outage_tasks // _BATCH // (sizes.cuts + 1))
                await send_batches(per_stretch)
                for _ in range(sizes.cuts):
                    run.fault()
                    proxy.refuse()
                    await run.send([(work, 0.01, next(tags)) for _ in range(_BATCH)])
                    await asyncio.sleep(sizes.cut_seconds)  # the outage itself
                    proxy.restore()
                    await send_batches(per_stretch - 1)
                run.notes.append(f"{sizes.cuts} cut(s) of {sizes.cut_seconds:g} s")
                return [await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)]
        finally:
            await proxy.close()


_BATCH = 10
