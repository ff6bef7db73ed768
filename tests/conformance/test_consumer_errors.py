"""A consumer that fails on one delivery fails that delivery alone (issue 20, defect 1): it
is rejected to the queue's dead-letter exchange, and the connection that carried it, with
every other delivery on it, goes on."""

from __future__ import annotations

import asyncio

import pytest

from taskq import App
from taskq.transport import Delivery
from tests.broker_control import connection_pids
from tests.support import BROKER, eventually, queue_length

pytestmark = pytest.mark.one_queue_only  # no worker: a consumer of the transport's own


async def test_an_exception_in_a_consumer_rejects_that_delivery_only(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App("consumer", broker=BROKER, prefix=prefix)
    acked: list[str] = []
    acks: set[asyncio.Task[None]] = set()

    def on_delivery(delivery: Delivery) -> None:
        if delivery.message_id == "poison":
            raise RuntimeError("a consumer bug, on this one message")
        acked.append(str(delivery.message_id))
        task = asyncio.ensure_future(delivery.ack())
        acks.add(task)
        task.add_done_callback(acks.discard)

    publishing, consuming = f"taskq-test:{prefix}:publish", f"taskq-test:{prefix}:consume"
    await app.open(connection_name=f"taskq-test:{prefix}")
    try:
        for task_id in ("first", "poison", "last"):
            await app.named("add").options(task_id=task_id).delay(1, 1)
        cancel = await app.transport.consume("default", on_delivery, prefetch=10)
        (connection,) = connection_pids(consuming)
        dead = app.names.dead_queue("default")

        async def settled() -> bool:
            return len(acked) == 2 and await queue_length(dead) == 1

        await eventually(settled, what="two deliveries acked and the poison one dead-lettered")
        assert acked == ["first", "last"]
        assert await queue_length(app.names.work_queue("default")) == 0
        assert connection_pids(consuming) == [connection]
        assert len(connection_pids(publishing)) == 1
        await cancel()
    finally:
        await app.close()
