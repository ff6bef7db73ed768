"""Workers SIGKILLed mid-run: a storm of kills, and a worker on three queues killed mid-task."""

from __future__ import annotations

import random
from typing import Any

from taskq import TaskCall

from .report import Row
from .run import Run
from .sizes import Sizes

QUEUES = ("default", "side", "bulk")


async def kill_storm(sizes: Sizes) -> list[Row]:
    """``kills`` SIGKILLs of the worker during a run of ``storm_tasks`` tasks of 2-50 ms, a new
    worker started after each; the Redis store records the results."""
    rng = random.Random(0)
    n = sizes.storm_tasks
    async with Run("SIGKILL storm", results=sizes.redis, concurrency=8) as run:
        worker = await run.start_worker()
        work = run.client.tasks["work"]
        await run.send([(work, rng.uniform(0.002, 0.05), i) for i in range(n)])
        running = []
        for k in range(sizes.kills):
            target = n * (k + 1) // (sizes.kills + 1)
            await run.until(lambda s, t=target: run.done(s) >= t, f"{target} tasks done")
            running.append(run.sigkill(worker))
            worker = await run.start_worker()
        run.notes.append(f"{sizes.kills} SIGKILLs; tasks running at each: {running}")
        return [await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)]


async def multi_queue(sizes: Sizes) -> list[Row]:
    """One row per seed, see ``multi_queue_once``."""
    return [await multi_queue_once(sizes, seed) for seed in range(1, sizes.seeds + 1)]


async def multi_queue_once(sizes: Sizes, seed: int) -> Row:
    """A worker serving three queues runs a random mix: 2-4 slow tasks, then 20-60 fast ones,
    each on a random queue. Once the slow ones run and the fast ones have finished, SIGKILL;
    a new worker finishes. Every task must still run (issue 9: acks for one queue's deliveries
    covered a running task of another queue)."""
    rng = random.Random(seed)
    async with Run(f"multi-queue kill (seed {seed})", queues=QUEUES, concurrency=8) as run:
        worker = await run.start_worker()
        work = run.client.tasks["work"]

        def on_random_queue() -> TaskCall[..., Any]:
            return work.options(queue=rng.choice(QUEUES))

        slow = [(on_random_queue(), rng.uniform(*sizes.slow_seconds), i)
                for i in range(rng.randint(2, 4))]  # fmt: skip
        fast = [(on_random_queue(), rng.uniform(0.005, 0.03), 100 + i)
                for i in range(rng.randint(20, 60))]  # fmt: skip
        slow_ids = {h.id for h in await run.send(slow)}
        await run.until(
            lambda s: slow_ids <= set(s.running(run.live_pids())), "the slow tasks to run"
        )
        fast_ids = [h.id for h in await run.send(fast)]
        await run.until(lambda s: s.count_done(fast_ids) == len(fast_ids), "the fast tasks")
        running = run.sigkill(worker)
        await run.start_worker()
        queues_of = [call.send_options.queue for call, *_ in slow]
        run.notes.append(
            f"slow tasks on {queues_of}, {len(fast)} fast ones done; SIGKILL with {running} running"
        )
        return await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)
