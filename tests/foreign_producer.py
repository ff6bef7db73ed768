"""A producer that is not taskq: an AMQP client spoken in bare frames, to send what other
clients send and aio-pika cannot (no message_id, a timestamp in milliseconds, short strings
that are not UTF-8, odd header tables)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

from pamqp import commands, frame, header
from pamqp.body import ContentBody

from tests.support import broker_endpoint

# AMQP 0-9-1 basic properties, in the order of their flag bits (bit 15 first).
PROPERTY_ORDER = (
    "content_type", "content_encoding", "headers", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
    "user_id", "app_id", "cluster_id",
)  # fmt: skip


def short(data: bytes) -> bytes:
    """An AMQP short string of these bytes, whatever they are."""
    return bytes((len(data),)) + data


def table(raw: bytes) -> bytes:
    """An AMQP field table of these encoded fields (their bytes as given)."""
    return struct.pack(">I", len(raw)) + raw


def u64(value: int) -> bytes:
    """A timestamp property of this raw value."""
    return struct.pack(">Q", value)


class RawAmqp:
    """One AMQP connection spoken in bare frames (pamqp).

    ``expect`` fails with AssertionError, never waits forever, when the broker closes the
    connection or the channel instead of answering.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = bytearray()  # what the broker sent that no frame has consumed yet

    def send(self, value: Any, channel: int = 0) -> None:
        self.writer.write(frame.marshal(value, channel))

    async def expect(self, kind: type[Any]) -> Any:
        """Read frames until one of ``kind``; return it."""
        while True:
            try:
                consumed, _, value = frame.unmarshal(bytes(self.received))
            except Exception:  # pamqp raises on an incomplete frame: read more
                await self._read_more(kind.__name__)
                continue
            del self.received[:consumed]
            if isinstance(value, (commands.Connection.Close, commands.Channel.Close)):
                raise AssertionError(
                    f"the broker closed before {kind.__name__}: {value.reply_text}"
                )
            if isinstance(value, kind):
                return value

    async def _read_more(self, awaited: str) -> None:
        try:
            chunk = await asyncio.wait_for(self.reader.read(4096), timeout=30)
        except OSError as exc:
            raise AssertionError(f"the broker dropped the connection before {awaited}") from exc
        if not chunk:
            raise AssertionError(f"the broker closed the connection before {awaited}")
        self.received.extend(chunk)

    async def publish(self, exchange: str, routing_key: str, body: bytes, **raw: bytes) -> None:
        """Publish on channel 1 (in confirm mode) with the properties given as their encoded
        bytes by name, and wait for the broker's confirm."""
        self.send(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1)
        flags = sum(1 << (15 - PROPERTY_ORDER.index(name)) for name in raw)
        encoded = b"".join(raw[name] for name in PROPERTY_ORDER if name in raw)
        payload = struct.pack(">HHQH", 60, 0, len(body), flags) + encoded
        self.writer.write(struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce")
        if body:
            self.send(ContentBody(body), 1)
        await self.expect(commands.Basic.Ack)


@contextlib.asynccontextmanager
async def raw_amqp() -> AsyncIterator[RawAmqp]:
    """A bare AMQP connection to the test broker with channel 1 open in confirm mode."""
    broker = broker_endpoint()
    reader, writer = await asyncio.open_connection(broker.host, broker.port, ssl=broker.tls)
    amqp = RawAmqp(reader, writer)
    try:
        writer.write(header.ProtocolHeader().marshal())
        await amqp.expect(commands.Connection.Start)
        amqp.send(commands.Connection.StartOk(response=f"\0{broker.user}\0{broker.password}"))
        tune = await amqp.expect(commands.Connection.Tune)
        amqp.send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        amqp.send(commands.Connection.Open(broker.vhost))
        await amqp.expect(commands.Connection.OpenOk)
        amqp.send(commands.Channel.Open(), 1)
        await amqp.expect(commands.Channel.OpenOk)
        amqp.send(commands.Confirm.Select(), 1)
        await amqp.expect(commands.Confirm.SelectOk)
        yield amqp
        amqp.send(commands.Connection.Close(200, "done", 0, 0))
        await amqp.expect(commands.Connection.CloseOk)
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # a broker that refused us reset the connection
            await writer.wait_closed()
