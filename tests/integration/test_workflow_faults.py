"""A chord through worker SIGKILLs: its callback runs exactly once, with every result in order.

Real ``taskq-worker`` processes; one is SIGKILLed (and replaced) five times while the members
run, so that members are redelivered and run twice, and joins are retried. Broker and store
restarts are the fault suite's (they stop shared services).
"""

from __future__ import annotations

import os
import signal

import pytest
import redis.asyncio

from taskq import App, codec
from taskq.workflow import chord
from tests.apps.workflow_app import collect, member, runs_key
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.support import BROKER, WorkerProcess, eventually

pytestmark = [
    pytest.mark.one_queue_only,
    pytest.mark.slow,  # about a minute: 2,000 members, five worker processes started
    pytest.mark.usefixtures("topology_cleanup"),
]

MEMBERS = int(os.environ.get("TASKQ_TEST_CHORD_MEMBERS", "2000"))
KILLS = 5
WORK = 0.02  # seconds per member: long enough for kills to land while members run


def start_worker(prefix: str) -> WorkerProcess:
    return WorkerProcess(
        "tests.apps.workflow_app:app", prefix, "-c", "20", env={"TASKQ_RESULTS": REDIS}
    )


async def test_a_chord_calls_back_once_through_worker_kills(prefix: str) -> None:
    raw = redis.asyncio.from_url(REDIS)
    workers = [start_worker(prefix) for _ in range(3)]
    app = App("wfapp", broker=BROKER, prefix=prefix, results=REDIS)
    try:
        for worker in workers:
            await worker.wait_ready(60)
        async with app:
            flow = chord([member.s(i, WORK) for i in range(MEMBERS)], collect.s())
            handle = await flow.delay(app=app)
            for kill in range(1, KILLS + 1):

                async def progressed(goal: int = kill * MEMBERS // (KILLS + 2)) -> bool:
                    ran = await raw.get(runs_key(prefix, "member"))
                    return int(ran or 0) >= goal

                await eventually(progressed, timeout=60, what=f"members before kill {kill}")
                doomed = workers.pop(kill % len(workers))
                doomed.signal(signal.SIGKILL)
                await doomed.wait_exit()
                doomed.kill()
                workers.append(start_worker(prefix))
            assert await handle.result(timeout=120) == MEMBERS

            async def drained() -> bool:
                return all(w.process.poll() is None for w in workers)

            await eventually(drained, what="the workers to keep running")
        runs = [codec.unpack(v) for v in await raw.lrange(runs_key(prefix, "callback"), 0, -1)]
        assert len(runs) == 1 and runs[0] == list(range(MEMBERS))
        assert int(await raw.get(runs_key(prefix, "member")) or 0) >= MEMBERS
    finally:
        for worker in workers:
            worker.kill()
        await delete_redis_keys(prefix)
        await raw.aclose()
