"""taskq's aio-pika connections read odd content headers tolerantly, after a reconnect too
(the reader task of the new connection inherits the tolerance; see
taskq.transport.aiopika_properties)."""

from __future__ import annotations

import asyncio
import uuid

from aio_pika.abc import AbstractIncomingMessage

from taskq.transport import TransportOptions, parse_endpoints
from taskq.transport.aiopika_lease import connect
from taskq.transport.aiopika_properties import FLAWS
from tests.broker_control import consumed
from tests.foreign_producer import raw_amqp, short
from tests.support import broker_proxy, eventually


async def test_a_reconnected_connection_still_reads_odd_headers() -> None:
    async with broker_proxy() as proxy:
        options = TransportOptions(parse_endpoints([proxy.amqp_url()]), prefix="unused")
        connection = await connect(options, "tolerant-headers", robust=True)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(f"tolerant-{uuid.uuid4().hex}", auto_delete=True)
            got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(got.put, no_ack=True)
            assert proxy.cut() >= 1

            async def back() -> bool:
                return proxy.accepted >= 2 and await consumed(queue.name)

            await eventually(back, timeout=30, what="the robust connection to consume again")
            async with raw_amqp() as amqp:
                odd = {"type": short(b"\xff\xfe"), "timestamp": (10**18).to_bytes(8, "big")}
                await amqp.publish("", queue.name, b"x", **odd)
            message = await asyncio.wait_for(got.get(), 30)
        finally:
            await connection.close()
    assert message.type == "\udcff\udcfe"
    assert message.timestamp is None  # nanoseconds: no datetime holds it
    assert set(message.headers[FLAWS]) == {"type"}
