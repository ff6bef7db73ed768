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


class BrokerClosed(AssertionError):
    """The broker closed the channel or the connection (or dropped it) instead of answering:
    ``reply`` says why, as the broker put it."""

    def __init__(self, awaited: str, reply: str) -> None:
        super().__init__(f"the broker closed before {awaited}: {reply}")
        self.reply = reply


class RawAmqp:
    """One AMQP connection spoken in bare frames (pamqp).

    ``expect`` fails with BrokerClosed (an AssertionError), never waits forever, when the
    broker closes the connection or the channel instead of answering.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 30
    ) -> None:
        self.reader, self.writer = reader, writer
        self.timeout = timeout
        """Seconds to wait for the broker's next bytes before BrokerClosed."""
        self.received = bytearray()  # what the broker sent that no frame has consumed yet
        self.frame_max = 4096  # the minimum every peer accepts, until Tune says more

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
                raise BrokerClosed(kind.__name__, f"{value.reply_code} {value.reply_text}")
            if isinstance(value, commands.Basic.Nack):
                raise BrokerClosed(kind.__name__, "basic.nack")
            if isinstance(value, kind):
                return value

    async def _read_more(self, awaited: str) -> None:
        try:
            chunk = await asyncio.wait_for(self.reader.read(4096), timeout=self.timeout)
        except TimeoutError as exc:
            raise BrokerClosed(awaited, f"no answer within {self.timeout} s") from exc
        except OSError as exc:
            raise BrokerClosed(awaited, f"connection dropped ({exc})") from exc
        if not chunk:
            raise BrokerClosed(awaited, "connection closed")
        self.received.extend(chunk)

    async def publish(self, exchange: str, routing_key: str, body: bytes, **raw: bytes) -> None:
        """Publish on channel 1 (in confirm mode) with the properties given as their encoded
        bytes by name, and wait for the broker's confirm."""
        self.send(commands.Basic.Publish(exchange=exchange, routing_key=routing_key), 1)
        flags = sum(1 << (15 - PROPERTY_ORDER.index(name)) for name in raw)
        encoded = b"".join(raw[name] for name in PROPERTY_ORDER if name in raw)
        payload = struct.pack(">HHQH", 60, 0, len(body), flags) + encoded
        self.writer.write(struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce")
        chunk = self.frame_max - 8
        for start in range(0, len(body), chunk):
            self.send(ContentBody(body[start : start + chunk]), 1)
        await self.expect(commands.Basic.Ack)


@contextlib.asynccontextmanager
async def raw_amqp(timeout: float = 30) -> AsyncIterator[RawAmqp]:
    """A bare AMQP connection to the test broker with channel 1 open in confirm mode; each
    wait for the broker gives up after ``timeout`` seconds (BrokerClosed)."""
    broker = broker_endpoint()
    reader, writer = await asyncio.open_connection(broker.host, broker.port, ssl=broker.tls)
    amqp = RawAmqp(reader, writer, timeout)
    try:
        writer.write(header.ProtocolHeader().marshal())
        await amqp.expect(commands.Connection.Start)
        amqp.send(commands.Connection.StartOk(response=f"\0{broker.user}\0{broker.password}"))
        tune = await amqp.expect(commands.Connection.Tune)
        amqp.send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        amqp.frame_max = tune.frame_max
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


class RefusalTolerantProducer:
    """A raw producer for messages the broker may refuse (a user_id that is not the
    connection's user, a bad expiration, a header table it cannot parse, a frame too large):
    ``publish`` returns the broker's reply instead of raising, and the next publish opens a new
    connection. Use it as ``async with RefusalTolerantProducer() as producer:``.

    A broker that does not answer within ``timeout`` seconds counts as refusing: RabbitMQ
    3.10 leaves a connection hanging after an ``expiration`` of arbitrary bytes."""

    def __init__(self, timeout: float = 5) -> None:
        self.timeout = timeout
        self._stack = contextlib.AsyncExitStack()
        self._amqp: RawAmqp | None = None

    async def __aenter__(self) -> RefusalTolerantProducer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, raw: dict[str, bytes]
    ) -> str | None:
        """Publish and wait for the confirm: None once confirmed, else why the broker refused
        (the connection is then dropped: it is gone, or its channel is)."""
        if self._amqp is None:
            self._amqp = await self._stack.enter_async_context(raw_amqp(self.timeout))
        try:
            await self._amqp.publish(exchange, routing_key, body, **raw)
        except BrokerClosed as exc:
            await self._close(exc)
            return exc.reply
        return None

    async def _close(self, refused: BrokerClosed | None = None) -> None:
        """Close the connection: politely, or (``refused``) just the socket."""
        self._amqp = None
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        with contextlib.suppress(BrokerClosed, OSError):  # a refused connection is gone already
            if refused is None:
                await stack.aclose()
            else:
                await stack.__aexit__(BrokerClosed, refused, refused.__traceback__)
