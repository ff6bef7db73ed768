"""A work queue deleted under a running worker and a long-lived client (issue 20, defect 6).

The broker cancels the worker's consumer, and the client's cached declarations are stale: the
next send comes back as unroutable. The client declares the queue again and sends once more;
the worker consumes again soon after the queue is back, and closes the channel of the
cancelled consumer instead of leaving one behind per cancel.
"""

from __future__ import annotations

import asyncio

import aio_pika

from taskq import App
from tests.broker_control import channels_of
from tests.support import BROKER, eventually, running_worker


async def _delete_queue(name: str) -> None:
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
    finally:
        await connection.close()


async def test_a_deleted_work_queue_is_declared_again_and_consumed_again(
    app: App, prefix: str
) -> None:
    consuming = f"taskq-worker:w-{prefix}:consume"
    async with app, running_worker(app, name=f"w-{prefix}"):
        assert await (await app.send("add", 1, 1)).result(timeout=15) == 2
        before = await asyncio.to_thread(channels_of, consuming)
        for round_ in range(3):
            await _delete_queue(app.names.work_queue("default"))
            handle = await app.send("add", round_, 10)  # unroutable, then declared again
            assert await handle.result(timeout=15) == round_ + 10

        async def no_channel_left_behind() -> bool:
            return await asyncio.to_thread(channels_of, consuming) == before

        await eventually(no_channel_left_behind, what="the cancelled consumers' channels to close")
