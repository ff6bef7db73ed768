"""A chord through every fault at once: worker SIGKILLs, a broker restart, a store restart.

Issue 22: the callback of a chord runs exactly once, with every member's result in order.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

from taskq.workflow import chord
from tests.redis_support import OwnRedis, own_redis_server
from tests.support import broker_proxy
from tests.tcp_proxy import TcpProxy

from .report import Row
from .run import Run
from .sizes import Sizes

WORKERS = 2


async def chord_faults(sizes: Sizes) -> list[Row]:
    """A chord of ``chord_members`` members (``work``, ``chord_work`` seconds each) whose
    callback (``gather``) checks that their results are all there, in order. ``kills``
    SIGKILLs of a worker (a new one after each), then the broker restarts as the workers and
    the client see it (they reach it through a proxy that drops every connection and refuses
    new ones for ``cut_seconds``; the shared RabbitMQ is never stopped), then the result
    store restarts (a private redis-server, AOF on, stopped and started again). The last
    member (``held``) retries until the faults are over, so that each lands before the join
    ends."""
    rng = random.Random(0)
    async with broker_proxy() as proxy:
        with own_redis_server() as store:
            await store.wait_up()
            url = proxy.amqp_url()
            async with Run(
                "chord through kills and restarts", results=store.url, concurrency=16,
                client_broker=[url], worker_broker=[url],
            ) as run:  # fmt: skip
                gate = Path(f"{run.ledger.path}.gate")
                try:
                    row = await _chord(run, sizes, proxy, store, gate, rng)
                finally:
                    gate.unlink(missing_ok=True)
    return [row]


async def _chord(
    run: Run, sizes: Sizes, proxy: TcpProxy, store: OwnRedis, gate: Path, rng: random.Random
) -> Row:
    n = sizes.chord_members
    workers = [await run.start_worker() for _ in range(WORKERS)]
    tasks = run.client.tasks
    ids = [str(uuid.uuid4()) for _ in range(n + 1)]
    steps = [tasks["work"].s(rng.uniform(*sizes.chord_work), i) for i in range(n - 1)]
    steps.append(tasks["held"].s(n - 1, str(gate)))
    members = [step.options(task_id=ids[i]) for i, step in enumerate(steps)]
    callback = tasks["gather"].s().options(task_id=ids[n])
    handle = await chord(members, callback).delay(app=run.client)
    run.confirmed += ids
    run.callers.watch([handle], [n])  # type: ignore[list-item]  # a workflow's handle
    faults = sizes.kills + 2
    running = []
    for k in range(sizes.kills):
        await _progress(run, n * (k + 1) // (faults + 1))
        doomed = workers.pop(0)  # the oldest: it runs members by now
        await doomed.wait_ready(timeout=60)
        running.append(run.sigkill(doomed))
        # Not waited for: the kills keep pace with the members, not with worker starts.
        workers.append(await run.start_worker(ready=False))
    for worker in workers:  # a worker that cannot reach the broker at its start exits
        await worker.wait_ready(timeout=60)
    await _progress(run, n * (faults - 1) // (faults + 1))
    run.fault()
    proxy.refuse()
    await asyncio.sleep(sizes.cut_seconds)  # the broker's outage itself
    proxy.restore()
    await _progress(run, n * faults // (faults + 1))
    run.fault()
    store.stop()
    await store.wait_up(False)
    store.start()
    await store.wait_up()
    gate.touch()  # the held member may end: the chord can complete
    run.notes.append(
        f"chord of {n}; {sizes.kills} SIGKILLs (tasks running at each: {running}), then the "
        f"broker cut for {sizes.cut_seconds:g} s, then the store restarted"
    )
    row = await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)
    row.callback_runs = run.ledger.read().done_by_id()[ids[n]]
    return row


async def _progress(run: Run, members: int) -> None:
    await run.until(lambda s: run.done(s) >= members, f"{members} members done", timeout=120)
