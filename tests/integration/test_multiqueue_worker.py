"""A worker that serves several queues: acks never cover a running task, and prefetch holds
exactly what the docs say (``prefetch`` unacked deliveries per consumed queue)."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest

from taskq import App
from tests.apps import multiqueue
from tests.support import (
    BROKER,
    WorkerProcess,
    delete_topology,
    eventually,
    queue_length,
    running_worker,
)

APP = "tests.apps.multiqueue:app"


def _done(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_worker_on_three_queues_killed_mid_task_loses_nothing(
    prefix: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    done, release = tmp_path / "done.txt", tmp_path / "release"
    client = multiqueue.build(broker=BROKER, prefix=prefix)
    slow_tags = list(range(rng.randint(1, 3)))
    bulk_tags = list(range(100, 100 + rng.randint(5, 15)))
    fast_tags = list(range(1000, 1000 + rng.randint(40, 80)))
    first = WorkerProcess(APP, prefix, "--concurrency", "8")
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with client:
            tasks = client.tasks
            # Slow tasks first: they hold the lowest delivery tags while everything else ends.
            for tag in slow_tags:
                await tasks["slow"].delay(str(done), tag, str(release))
            calls = [(tasks["bulk"], (str(done), t, rng.uniform(0, 0.2))) for t in bulk_tags]
            calls += [(tasks["fast"], (str(done), t)) for t in fast_tags]
            rng.shuffle(calls)
            await client.send_many(calls)

            async def others_done() -> bool:
                return set(bulk_tags + fast_tags) <= set(_done(done))

            await eventually(others_done, timeout=60, what="the fast and bulk tasks to finish")
            assert not set(slow_tags) & set(_done(done)), "the slow tasks must still run"
            first.signal(signal.SIGKILL)
            assert await first.wait_exit() == -signal.SIGKILL
            # Nothing the killed worker was running may have been acked: it is all back.
            assert await queue_length(client.names.work_queue("side")) == len(slow_tags)
            release.touch()
            second = WorkerProcess(APP, prefix, "--concurrency", "8")

            async def slow_done() -> bool:
                return set(slow_tags) <= set(_done(done))

            await eventually(slow_done, timeout=90, what="the slow tasks to run again")
        assert sorted(set(_done(done))) == sorted(slow_tags + bulk_tags + fast_tags)
    finally:
        first.kill()
        if second is not None:
            second.kill()
        await delete_topology(prefix, multiqueue.QUEUES)


@pytest.mark.idle_extra_queue  # it counts what its worker did
async def test_prefetch_is_held_per_consumed_queue(prefix: str) -> None:
    app = App("prefetch", broker=BROKER, prefix=prefix, prefetch=3)
    release = asyncio.Event()

    async def hold() -> None:
        await release.wait()

    for queue in multiqueue.QUEUES:
        app.task(name=f"hold_{queue}", queue=queue)(hold)
    try:
        async with app:
            for queue in multiqueue.QUEUES:
                await app.send_many([(f"hold_{queue}", ())] * 10)
            async with running_worker(app, concurrency=2) as worker:

                async def holding() -> bool:
                    return len(worker.active) + worker.reserved == 9

                await eventually(holding, what="the worker to hold 3 deliveries per queue")
                # Measured at the broker: each queue handed out exactly `prefetch`.
                for queue in multiqueue.QUEUES:
                    assert await queue_length(app.names.work_queue(queue)) == 10 - 3
                assert len(worker.active) == 2 and worker.reserved == 7
                assert worker.stats()["prefetch_total"] == 3 * len(worker.queues)
                release.set()

                async def drained() -> bool:
                    return worker.counters.succeeded == 30

                await eventually(drained, what="all 30 tasks to finish")
    finally:
        await delete_topology(prefix, multiqueue.QUEUES)
