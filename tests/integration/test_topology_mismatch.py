"""A queue that already exists with other arguments gives a clear error, not a dead channel."""

from __future__ import annotations

import aio_pika
import pytest

from taskq import App, TopologyMismatch
from tests.support import BROKER, WorkerProcess


async def test_existing_queue_with_other_arguments(prefix: str, topology_cleanup: set[str]) -> None:
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
        # The app is still usable afterwards: the failed declare did not poison its channels.
        assert await app.transport.queue_depth(app.names.work_queue("default")) is not None

    worker = WorkerProcess("tests.apps.procapp:app", prefix)
    try:
        assert await worker.wait_exit(timeout=60) == 2  # usage error: fix the topology first
        assert "other arguments" in worker.output()
    finally:
        worker.kill()
