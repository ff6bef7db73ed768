"""A send returns at the first of the broker's confirm and its task's outcome (issue 27).

A persistent message's confirm comes only once it is on disk or acked by its consumer; for a
short task the outcome is often back with the sender first. The native transport's publish
takes a ``delivered`` future for that: these tests hold the confirm back (a frozen proxy: what
is sent on the open connection goes nowhere) and check that ``delivered`` alone ends the
publish, and that without it the publish still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import aio_pika

from taskq import App
from taskq.message import OutgoingMessage
from taskq.transport import TransportOptions, make_transport, parse_endpoints
from tests.support import BROKER, broker_proxy, eventually, running_worker


async def test_a_publish_ends_when_delivered_even_with_its_confirm_held_back() -> None:
    async with broker_proxy() as proxy:
        options = TransportOptions(
            parse_endpoints([proxy.amqp_url()]), prefix=f"early-{uuid.uuid4().hex[:8]}"
        )
        transport = make_transport(options)
        await transport.connect()
        try:
            queue = f"{options.prefix}.q"
            await transport.declare_queue(queue, {})
            await transport.publish("", queue, OutgoingMessage(b"warm"))  # channel open
            assert proxy.freeze() >= 1  # from now on no confirm reaches the transport
            loop = asyncio.get_running_loop()
            delivered: asyncio.Future[None] = loop.create_future()
            early = asyncio.ensure_future(
                transport.publish("", queue, OutgoingMessage(b"a"), delivered=delivered)
            )
            held = asyncio.ensure_future(transport.publish("", queue, OutgoingMessage(b"b")))
            for _ in range(3):  # both are written and wait for their confirms
                await asyncio.sleep(0)
            assert not early.done() and not held.done()
            delivered.set_result(None)  # the outcome came back on another connection
            await asyncio.wait_for(early, timeout=10)
            assert not held.done()  # its confirm is still held back: it waits on
            held.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held
        finally:
            proxy.cut()
            await transport.close()
    await _delete(queue)


async def test_a_round_trip_still_gives_every_result_in_order(prefix: str) -> None:
    # Sequential round trips take the early path whenever the reply beats the confirm.
    app = App("early", broker=BROKER, prefix=prefix)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with app, running_worker(app):
        results = [await (await double.delay(i)).result(timeout=10) for i in range(50)]
        handle = await double.delay(7)
        await eventually(lambda: _done(handle), what="the last outcome")
    assert results == [2 * i for i in range(50)]


async def _done(handle: object) -> bool:
    return (await handle.status()).terminal  # type: ignore[attr-defined,no-any-return]


async def _delete(queue: str) -> None:
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
    finally:
        await connection.close()
