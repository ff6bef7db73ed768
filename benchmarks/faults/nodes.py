"""A cluster node SIGKILLed: the node that leads the work queue (quorum) of a busy run.

Runs on the 3-node cluster of ``scripts/cluster.sh`` (``TASKQ_CLUSTER_*`` say which; it is
started if its nodes do not answer, and then stopped at the end). The workers try the nodes
in the order 1, 2, 3, the client 2, 3, 1: they sit on different nodes. The work, dead-letter
and delay queues are quorum queues, the results go to Redis.
"""

from __future__ import annotations

import asyncio
import random
import time

from tests.cluster_support import Cluster

from .report import Row
from .run import Run
from .sizes import Sizes

WORKERS = 2
AFTER_RESTART = 50
"""Tasks sent once the node is back: the same worker processes must run them."""
ROLES = {1: "the workers' first node", 2: "the client's first node"}


async def node_kill(sizes: Sizes) -> list[Row]:
    """``node_kill_tasks`` tasks of 2-20 ms sent at once; when a third are done, SIGKILL the
    node that leads the work queue; when two thirds are done, start it again; then
    ``AFTER_RESTART`` more tasks. Targets as every scenario's, and no worker process lost.

    Then the same with the workers' node killed (node 1, where their connections, presence
    and control queues are), whoever leads the work queue: the full run only
    (``Sizes.node_kill_victims``)."""
    cluster = Cluster.from_env()
    started = await asyncio.to_thread(cluster.ensure_up)
    try:
        return [await _node_kill(cluster, sizes, victim) for victim in sizes.node_kill_victims]
    finally:
        if started:
            await asyncio.to_thread(cluster.run, "down")


async def _node_kill(cluster: Cluster, sizes: Sizes, victim: int | None) -> Row:
    """One run; ``victim`` is the node to kill, None for the work queue's leader."""
    rng = random.Random(0)
    n = sizes.node_kill_tasks
    async with Run(
        "node kill (work queue leader)" if victim is None else f"node kill ({ROLES[victim]})",
        results=sizes.redis,
        concurrency=8,
        client_broker=cluster.urls(2, 3, 1),
        worker_broker=cluster.urls(1, 2, 3),
        rabbitmqctl=cluster.command("ctl", "2"),
        queue_type="quorum",
    ) as run:
        workers = [await run.start_worker() for _ in range(WORKERS)]
        pids = {w.process.pid for w in workers}
        work = run.client.tasks["work"]
        await run.send([(work, rng.uniform(0.002, 0.02), i) for i in range(n)])
        sent_at = time.monotonic()
        await run.until(lambda s: run.done(s) >= n // 3, f"{n // 3} tasks done", timeout=120)
        leader = victim or await asyncio.to_thread(
            cluster.queue_leader, run.client.names.work_queue("default")
        )
        running = len(run.ledger.read().running(run.live_pids()))
        run.fault()
        killed_at = time.monotonic()
        first = killed_at - sent_at
        await asyncio.to_thread(cluster.run, "kill", str(leader))
        await run.until(
            lambda s: run.done(s) >= 2 * n // 3, f"{2 * n // 3} tasks done", timeout=180
        )
        served = time.monotonic() - killed_at
        await asyncio.to_thread(cluster.run, "start", str(leader))
        back = time.monotonic() - killed_at
        new_leader = await asyncio.to_thread(
            cluster.queue_leader, run.client.names.work_queue("default")
        )
        await run.send([(work, 0.002, n + i) for i in range(AFTER_RESTART)])
        run.notes.append(
            f"the first {n // 3} tasks done in {first:.1f} s; killed node {leader} "
            f"({ROLES.get(leader, 'neither')}), {running} tasks running; {n // 3} more done "
            f"{served:.1f} s after the kill; the node back in the cluster "
            f"after {back:.1f} s, the leader then node {new_leader}"
        )
        row = await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)
        if run.live_pids() != pids or len(run.workers) != WORKERS:
            row.failures.append(f"worker processes lost: {sorted(pids - run.live_pids())}")
        return row
