"""A queue that already exists with other arguments gives a clear error, not a dead channel."""

from __future__ import annotations

import aio_pika
import pytest

from taskq import App, TopologyMismatch
from tests.support import BROKER, WorkerProcess, queue_length, running_worker


async def test_existing_queue_with_other_arguments(prefix: str, topology_cleanup: set[str]) -> None:
    topology_cleanup.add("other")
    app = App("mismatch", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        # Same name as taskq's work queue, but no priority and no dead-letter exchange.
        await channel.declare_queue(app.names.work_queue("default"), durable=True)
    finally:
        await connection.close()

    async with app:
        with pytest.raises(TopologyMismatch, match="other arguments"):
            await add.delay(1, 2)
        # The same App is still usable afterwards: the failed declare did not poison the
        # channels it declares and publishes on. It declares and sends to another queue...
        transport = app.transport
        await transport.declare_delay_path(1000)
        handle = await add.options(queue="other").delay(1, 2)
        assert await queue_length(app.names.work_queue("other")) == 1
        # ...says the same clear thing again about the bad queue (not "channel closed")...
        with pytest.raises(TopologyMismatch, match="other arguments"):
            await transport.declare_work_queue("default")
        # ...and gets the result of what it sent, through its own reply queue.
        async with running_worker(app, queues=["other"]):
            assert await handle.result(timeout=20) == 3
        depth = await transport.queue_depth(app.names.work_queue("other"))
        assert depth is not None and depth.messages == 0

    worker = WorkerProcess("tests.apps.procapp:app", prefix)
    try:
        assert await worker.wait_exit(timeout=60) == 2  # usage error: fix the topology first
        assert "other arguments" in worker.output()
    finally:
        worker.kill()
