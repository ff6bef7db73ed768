"""A full RabbitMQ restart (stop_app / start_app) while a worker runs and a client sends.

Durable queues and persistent messages survive it; both sides reconnect, re-declare and
re-consume; sends made while the broker is down wait for it (up to publish_timeout). The test
always starts the broker again, whatever happens.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from taskq import App, TaskHandle
from tests.support import BROKER, WorkerProcess, eventually

pytestmark = pytest.mark.slow


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


async def _broker_answers() -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", 5672)
    except OSError:
        return False
    writer.close()
    return True


async def test_worker_and_client_survive_a_broker_restart(
    prefix: str, topology_cleanup: set[str]
) -> None:
    client = App("restart", broker=BROKER, prefix=prefix)

    @client.task
    async def sleepy(seconds: float, tag: int) -> int:  # runs in the procapp worker
        return tag

    worker = WorkerProcess("tests.apps.procapp:app", prefix)
    try:
        await worker.wait_ready()
        async with client:
            assert await (await sleepy.delay(0.0, -1)).result(timeout=20) == -1
            queued = [await sleepy.delay(0.2, i) for i in range(5)]  # in the queue or running
            try:
                await asyncio.to_thread(_rabbitmqctl, "stop_app")
                during = asyncio.ensure_future(sleepy.delay(0.0, 99))  # waits for the broker
            finally:
                await asyncio.to_thread(_rabbitmqctl, "start_app")
            await eventually(_broker_answers, timeout=60, what="RabbitMQ to listen again")
            late: TaskHandle[int] = await asyncio.wait_for(during, timeout=60)
            # Replies published while the client was reconnecting can be lost (the AMQP store
            # serves a connected sender), so check the tasks that went through the restart by
            # sending more and by the worker's own log, and the new ones by their results.
            after = [await sleepy.delay(0.0, 100 + i) for i in range(10)]
            results = [await h.result(timeout=60) for h in after]
            assert results == [100 + i for i in range(10)]
            assert await late.result(timeout=60) == 99
        async def all_ran() -> bool:
            done = worker.output().count("succeeded")
            return done >= 1 + len(queued) + 1 + 10
        await eventually(all_ran, timeout=60, what="every task to succeed in the worker")
        assert worker.process.poll() is None, "the worker must survive the restart"
    finally:
        if not await _broker_answers():
            await asyncio.to_thread(_rabbitmqctl, "start_app")
        worker.kill()
