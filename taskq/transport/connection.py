"""taskq's own AMQP 0-9-1 connection for the hot paths: consuming and confirmed publishing.

Through aiormq a delivery cost about 80 us of CPU before taskq saw it (a lock, a BytesIO and
three reads per frame, pamqp objects for every field, an asyncio queue per channel, a Task per
delivery), and a confirmed publish about as much (a lock, timers, a writer task, and a scan of
every pending confirm on each multiple-ack). This connection reads the socket in whole
buffers, splits and decodes frames with :mod:`taskq.transport.frames`, hands deliveries to
their consumer synchronously, writes each publish as one buffer, and settles confirms in
order from a deque. Methods off the hot path (handshake, channel open/close, qos, consume,
cancel, confirm.select) use pamqp's codec through :meth:`Channel.rpc`.

Reconnecting is not this module's job: a Connection that is lost stays lost (its ``closed``
future says why), and :mod:`taskq.transport.link` opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from pamqp import commands, header
from pamqp.base import Frame as PamqpFrame

from ..exceptions import BrokerRefused, BrokerUnavailable, ChannelsExhausted
from . import frames, refusals
from .endpoints import Endpoint, describe_tls_failure
from .wire import Delivery, acker_of

log = logging.getLogger("taskq.transport")

OnDelivery = Callable[[Delivery], None]
FRAME_MAX = 131072
CHANNEL_MAX = 2047  # what RabbitMQ offers by default
NUMBERS = 65535  # channel numbers are 16 bits; 0 is the connection's own
CLOSE_TIMEOUT = 5.0
DEFAULT_HEARTBEAT = 60
NOT_FOUND = 404
ACCESS_REFUSED = 403
RESOURCE_LOCKED = 405
UNCONFIRMED_LIMIT = 1 << 20
TURN_BATCH = 128
"""Publishers let write at once each time the socket takes writes again (see writable)."""
"""Bytes a connection may hold for its socket, while the socket takes no more, before
unconfirmed publishes (events, status notifications) are dropped instead of written."""
FLUSH_AT = 1 << 18
"""Bytes written in one event-loop turn after which they go to the socket at once: the
socket then says within the turn when it takes no more (``pause_writing``)."""
NOT_ALLOWED = 530


class ChannelClosed(ConnectionError):
    """A channel or its connection closed; ``code`` is the broker's reply code (0: the
    connection was lost)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def negotiate_heartbeat(asked: int | None, proposed: int) -> int:
    """The heartbeat interval (seconds) to answer in Connection.TuneOk: what the URL asked
    for (0: none, only when asked), else the broker's proposal, else DEFAULT_HEARTBEAT.

    RabbitMQ takes the client's TuneOk value as the interval for both sides (what pika
    does with a given value; aiormq always sends its own, 60 by default). A broker that
    proposes 0 would otherwise leave the connection without any dead-peer detection: a
    silent peer (a dead node, a dropped NAT entry) would look alive until TCP gave up."""
    if asked is not None:
        return asked
    return proposed or DEFAULT_HEARTBEAT


class Returned(Exception):
    """The broker returned a mandatory publish: no queue is bound for its routing key."""


class Nacked(Exception):
    """The broker nacked a publish (it could not take responsibility for it)."""


Pending = tuple[asyncio.Future[None], str | None, str, int, str]
"""An unconfirmed publish: its confirm, message ID (if mandatory), exchange, body size and
routing key."""
ReturnKey = tuple[str, str, str]
"""What matches a return to its publish: message ID, exchange, routing key. The ID alone
does not: taskq's message IDs are task IDs, which a producer may reuse, and a worker may
publish a reply and a dead-letter copy with the same ID at once."""


def _closed_by(close: commands.Channel.Close | commands.Connection.Close) -> ChannelClosed:
    return ChannelClosed(f"{close.reply_code} {close.reply_text}", close.reply_code or 0)


class Channel:
    """One channel of a Connection: one consumer on it, or publishing (confirmed or not)."""

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.is_closed = False
        self.closing: asyncio.Future[ChannelClosed] = asyncio.get_running_loop().create_future()
        self.consumer_stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        """Resolved (with why) when the consumer stops without taskq asking: the broker
        cancelled it, or the channel closed."""
        self.consumer: OnDelivery | None = None
        self.consumer_tag: str | None = None
        self.queue = ""
        self.label = ""
        self._acks = True
        self._closing = False  # taskq sent channel.close
        self._lock = asyncio.Lock()
        self._reply: asyncio.Future[Any] | None = None
        self._content: tuple[Any, ...] | None = None  # the method whose content is arriving
        self._props: dict[str, Any] = {}
        self._flaws: Mapping[str, str] = frames.NO_FLAWS
        self._body: list[bytes] = []
        self._remaining = 0
        self._confirming = False
        self._seq = 0
        # Publishes awaiting their confirm, by sequence number, and those numbers in order (a
        # multiple ack settles every one up to its tag; single acks may come in any order).
        self._unconfirmed: dict[int, Pending] = {}
        self._order: collections.deque[int] = collections.deque()
        self._returned: dict[ReturnKey, int] = {}  # -> reply code, until its confirm

    def __repr__(self) -> str:
        return f"<Channel {self.number} of {self.connection.name}>"

    async def rpc(self, request: PamqpFrame, *, after: Sequence[PamqpFrame] = ()) -> Any:
        """Send a method and wait for the broker's answer (one at a time per channel): a pamqp
        method, or a Delivery for a ``basic.get`` that found a message.

        ``after`` are methods sent first, in one write, with ``nowait`` set (they get no
        answer): the broker handles a channel's methods in order, so the answer to
        ``request`` means they were all done, and if one failed, the channel closes and this
        raises ChannelClosed instead.
        """
        async with self._lock:
            if self.is_closed:
                raise ChannelClosed(f"channel {self.number} is closed")
            self._reply = asyncio.get_running_loop().create_future()
            number = self.number
            self.connection.write(
                b"".join(frames.marshal(number, method) for method in (*after, request))
            )
            return await self._reply

    # -- incoming ---------------------------------------------------------------------------

    def on_method(self, payload: memoryview) -> None:
        """A method frame for this channel."""
        kind = frames.class_method(payload)
        if kind == (frames.BASIC, frames.DELIVER):
            _, tag, redelivered, _, routing_key = frames.deliver(payload)
            self._content = ("deliver", tag, redelivered, routing_key)
        elif kind == (frames.BASIC, frames.ACK):
            self._confirmed(*frames.confirm(payload), None)
        elif kind == (frames.BASIC, frames.NACK):
            self._confirmed(*frames.confirm(payload), Nacked("the broker nacked the publish"))
        elif kind == (frames.BASIC, frames.RETURN):
            code, _, exchange, routing_key = frames.returned(payload)
            self._content = ("return", code, exchange, routing_key)
        elif kind == (frames.BASIC, frames.GET_OK):
            self._content = ("get", *frames.get_ok(payload))
        else:
            self._on_other(frames.method(self.number, payload))

    def _on_other(self, value: PamqpFrame) -> None:
        if isinstance(value, commands.Channel.Close):
            self.connection.write(frames.marshal(self.number, commands.Channel.CloseOk()))
            self.closed(_closed_by(value))
        elif isinstance(value, commands.Channel.CloseOk) and not self._closing:
            # The answer to the close of the channel this number had before, a close that
            # crossed the broker's own: the number was freed at the broker's and used again.
            return
        elif isinstance(value, commands.Basic.Cancel):
            # The queue was deleted, or its node went down. The channel stays open: running
            # tasks still ack on it. Whoever consumes (taskq.transport.link) consumes again.
            self.consumer_tag = None
            if not self.consumer_stopped.done():
                self.consumer_stopped.set_result("cancelled by the broker")
        elif self._reply is not None and not self._reply.done():
            self._reply.set_result(value)

    def on_header(self, payload: memoryview) -> None:
        """A content header (after a deliver or a return)."""
        self._remaining, self._props, self._flaws = frames.content_header(payload)
        self._body = []
        if self._remaining == 0:
            self._complete()

    def on_body(self, payload: memoryview) -> None:
        """A piece of a content body."""
        self._body.append(bytes(payload))
        self._remaining -= len(payload)
        if self._remaining <= 0:
            self._complete()

    def _complete(self) -> None:
        content, self._content = self._content, None
        if content is None or self.is_closed:
            return
        kind = content[0]
        if kind == "return":  # a returned publish: its confirm follows
            message_id = self._props.get("message_id")
            if message_id is not None:
                self._returned[(message_id, content[2], content[3])] = content[1]
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        _, tag, redelivered, routing_key = content
        if kind == "get":
            got = Delivery(body, self._props, tag, redelivered, routing_key, self.label, self,
                           acker_of(self), self._flaws)  # fmt: skip
            if self._reply is not None and not self._reply.done():
                self._reply.set_result(got)
        elif self.consumer is not None:
            self._deliver(self.consumer, body, tag, redelivered, routing_key)

    def _deliver(
        self, consumer: OnDelivery, body: bytes, tag: int, redelivered: bool, routing_key: str
    ) -> None:
        """Hand one delivery to the consumer. Whatever goes wrong there fails this delivery
        alone: it is rejected without requeue (the broker dead-letters it to the queue's
        dead-letter exchange), and the connection, its other channels and deliveries go on."""
        try:
            acker = acker_of(self) if self._acks else None
            delivery = Delivery(body, self._props, tag, redelivered, routing_key, self.label,
                                self, acker, self._flaws)  # fmt: skip
            consumer(delivery)
        except Exception:
            log.exception("delivery %d on %r failed in its consumer; rejecting it to the "
                          "dead-letter exchange", tag, self)  # fmt: skip
            if self._acks:
                acker_of(self).ledger.drop(tag)
                self.connection.write(frames.reject(self.number, tag, requeue=False))

    def _confirmed(self, tag: int, multiple: bool, failure: Exception | None) -> None:
        unconfirmed, order = self._unconfirmed, self._order
        if not multiple:
            entry = unconfirmed.pop(tag, None)
            if entry is not None:
                self._settle(entry, failure)
            return
        while order and order[0] <= tag:
            entry = unconfirmed.pop(order.popleft(), None)
            if entry is not None:  # else settled by a single ack already
                self._settle(entry, failure)

    def _settle(self, entry: Pending, failure: Exception | None) -> None:
        future, message_id, exchange, _, routing_key = entry
        code = None
        if message_id is not None:
            code = self._returned.pop((message_id, exchange, routing_key), None)
        if code is not None and failure is None:
            failure = Returned(f"returned: {code} (no queue bound for it)")
        if future.done():
            return
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)

    def closed(self, exc: ChannelClosed) -> None:
        """The channel is gone (closed by either side, or with its connection)."""
        if self.is_closed:
            return
        self.is_closed = True
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        self._order.clear()
        self._fail_unconfirmed(list(unconfirmed.values()), exc)
        if not self.closing.done():
            self.closing.set_result(exc)
        if not self.consumer_stopped.done():
            self.consumer_stopped.set_result(f"channel closed: {exc}")
        self.connection.forget(self.number)

    def _fail_unconfirmed(self, pending: list[Pending], exc: ChannelClosed) -> None:
        """Fail the confirms the channel took with it. When the broker closed it to refuse
        one publish, only that one gets the refusal; the others get a ChannelClosed without a
        reply code, as after a lost connection: they were not refused, so their publishers send
        them again on a new channel (at-least-once: one that was routed may then arrive twice).
        """
        pending = [entry for entry in pending if not entry[0].done()]
        refused = refusals.blamed(exc.code, str(exc), [(e[2], e[3]) for e in pending])
        for index, (future, *_) in enumerate(pending):
            if refused is None or index == refused:
                future.set_exception(exc)
            else:
                future.set_exception(ChannelClosed(
                    f"not confirmed: channel {self.number} was closed for another publish ({exc})"
                ))  # fmt: skip

    async def close(self) -> None:
        """Close the channel (idempotent); what it held unacked goes back to its queues."""
        if self.is_closed:
            return
        self._closing = True
        with contextlib.suppress(ConnectionError):
            await self.rpc(commands.Channel.Close(200, "done", 0, 0))
        self.closed(ChannelClosed("closed by taskq", 200))

    # -- consuming --------------------------------------------------------------------------

    async def consume(
        self,
        queue: str,
        label: str,
        consumer: OnDelivery,
        *,
        prefetch: int,
        acks: bool = True,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Consume ``queue``; its deliveries carry ``label`` (taskq's short queue name) as their
        queue. With ``acks``, at most ``prefetch`` deliveries are held unacked. ``arguments``
        are the consumer's (e.g. ``x-stream-offset``)."""
        self.queue, self.label, self.consumer, self._acks = queue, label, consumer, acks
        if acks:
            await self.rpc(commands.Basic.Qos(prefetch_count=prefetch))
        ok = await self.rpc(
            commands.Basic.Consume(queue=queue, no_ack=not acks, arguments=arguments)
        )
        assert isinstance(ok, commands.Basic.ConsumeOk)
        self.consumer_tag = ok.consumer_tag

    async def cancel(self) -> None:
        """Stop consuming (the channel stays open: running tasks still ack on it)."""
        if self.consumer_tag is not None and not self.is_closed:
            with contextlib.suppress(ConnectionError):
                await self.rpc(commands.Basic.Cancel(consumer_tag=self.consumer_tag))

    def write_acks(self, acks: list[tuple[int, bool]]) -> None:
        """Send ``(tag, multiple)`` acks in one write (no reply comes for an ack)."""
        if self.is_closed:
            raise ChannelClosed(f"channel {self.number} is closed: acks not sent")
        number = self.number
        self.connection.write(b"".join(frames.ack(number, t, multiple=m) for t, m in acks))

    async def basic_reject(self, tag: int, *, requeue: bool) -> None:
        """Reject one delivery (back to its queue with ``requeue``)."""
        if self.is_closed:
            raise ChannelClosed(f"channel {self.number} is closed: reject not sent")
        self.connection.write(frames.reject(self.number, tag, requeue=requeue))

    # -- publishing -------------------------------------------------------------------------

    def take_returns(self) -> dict[str, int]:
        """The message IDs (with reply codes) of mandatory publishes returned since the last
        call. Without publisher confirms (in a transaction) nothing else collects them."""
        returned, self._returned = self._returned, {}
        return {message_id: code for (message_id, _, _), code in returned.items()}

    async def confirm_mode(self) -> None:
        """Turn on publisher confirms for this channel."""
        await self.rpc(commands.Confirm.Select())
        self._confirming = True

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        props: Mapping[str, Any],
        *,
        mandatory: bool,
    ) -> asyncio.Future[None] | None:
        """Write one publish; in confirm mode return the future of its confirm, which fails
        with Returned, Nacked or ChannelClosed. A mandatory publish needs a ``message_id``
        (a return is matched to its publish by it)."""
        if self.is_closed:
            raise ChannelClosed(f"channel {self.number} is closed")
        self.connection.write(frames.publish(
            self.number, exchange, routing_key, body, props,
            mandatory=mandatory, frame_max=self.connection.frame_max,
        ))  # fmt: skip
        if not self._confirming:
            return None
        self._seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        message_id = props.get("message_id") if mandatory else None
        self._unconfirmed[self._seq] = (future, message_id, exchange, len(body), routing_key)
        self._order.append(self._seq)
        return future


class Connection(asyncio.Protocol):
    """One AMQP connection (see the module docstring)."""

    def __init__(self, name: str, channel_max: int = CHANNEL_MAX) -> None:
        self.name = name
        self.frame_max = FRAME_MAX
        self.channel_max = channel_max
        """Channels open at once: what taskq asked for, then the lower of that and the
        broker's limit once open. Numbers run from 1 to it and are reused (see channel())."""
        self.server_properties: dict[str, Any] = {}
        """What the broker said of itself at the handshake (``product``, ``version``...)."""
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[ChannelClosed] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._channels: dict[int, Channel] = {}
        self._next = 1  # the lowest number never used yet
        self._free: list[int] = []  # numbers below _next whose channel closed: a heap
        self._handshake: asyncio.Queue[PamqpFrame] = asyncio.Queue()
        self._heartbeat = 0
        self._step = "start"  # of the handshake: start, login, open, then open
        self._last_read = time.monotonic()
        self._beats: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()
        self._granted = 0  # turns given whose publisher has not written yet
        self.blocked = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport.write(header.ProtocolHeader().marshal())

    def data_received(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        # Parse the bytes as they came; only an incomplete tail is kept, in a new buffer (the
        # payloads handed out are views of this read and must not see it resized).
        buffer: bytes | bytearray = data
        if self._buffer:
            self._buffer += data
            buffer = self._buffer
        try:
            parsed, used = frames.split(buffer)
            for kind, number, payload in parsed:
                self._dispatch(kind, number, payload)
        except Exception as exc:  # a protocol error or a bug: this connection is done
            log.exception("connection %s failed on incoming data", self.name)
            self._fail(ChannelClosed(f"protocol error: {exc!r}"))
            return
        self._buffer = bytearray(buffer[used:]) if used < len(buffer) else bytearray()

    def pause_writing(self) -> None:
        # asyncio: the socket's buffer passed its high-water mark (the peer does not read, e.g.
        # RabbitMQ blocked this connection on a memory alarm).
        self._writable.clear()
        log.debug("connection %s: writing paused", self.name)

    def resume_writing(self) -> None:
        self._writable.set()
        log.debug("connection %s: writing resumed", self.name)
        self._grant()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ChannelClosed(f"connection lost: {exc or 'closed by the broker'}"))
        if not self._lost.done():
            self._lost.set_result(None)

    # -- frames -----------------------------------------------------------------------------

    def _dispatch(self, kind: int, number: int, payload: memoryview) -> None:
        channel = self._channels.get(number)
        if channel is not None:
            if kind == frames.METHOD:
                channel.on_method(payload)
            elif kind == frames.BODY:
                channel.on_body(payload)
            elif kind == frames.HEADER:
                channel.on_header(payload)
        elif number == 0 and kind == frames.METHOD:
            self._on_connection_method(frames.method(0, payload))
        # Heartbeats only prove the broker is alive (_last_read); frames for a channel that
        # is already forgotten (a close crossing deliveries) are dropped.

    def _on_connection_method(self, value: PamqpFrame) -> None:
        if isinstance(value, commands.Connection.Close):
            # CloseOk must reach the socket before _fail closes it (write only queues it).
            self.write(frames.marshal(0, commands.Connection.CloseOk()))
            self._flush()
            self._fail(_closed_by(value))
        elif isinstance(value, commands.Connection.Blocked):
            self.blocked = True
            log.warning("RabbitMQ blocked publishing on %s: %s", self.name, value.reason)
        elif isinstance(value, commands.Connection.Unblocked):
            self.blocked = False
            log.info("RabbitMQ unblocked publishing on %s", self.name)
        else:
            self._handshake.put_nowait(value)

    def write(self, data: bytes) -> None:
        """Queue bytes for the socket: everything written in one event-loop turn goes out in
        one write at its end (a socket write costs far more than joining bytes). Nothing
        happens once the connection is lost."""
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_AT:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._out, self._out_size = self._out, [], 0
        transport = self._transport
        if transport is not None and not transport.is_closing() and data:
            transport.write(data[0] if len(data) == 1 else b"".join(data))

    @property
    def buffered(self) -> int:
        """Bytes written and not yet taken by the socket (this process's memory)."""
        transport = self._transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        return held + self._out_size

    @property
    def paused(self) -> bool:
        """Whether the socket takes no more for now (until ``resume_writing``)."""
        return not self._writable.is_set()

    def has_room(self) -> bool:
        """Whether an unconfirmed publish may be written now: always while the socket takes
        what is written; while it does not, until ``UNCONFIRMED_LIMIT`` bytes wait."""
        return self._writable.is_set() or self.buffered < UNCONFIRMED_LIMIT

    def must_wait(self) -> bool:
        """Whether a publisher must wait in :meth:`writable` before writing (synchronous, so
        that the publish hot path makes no coroutine when the socket takes writes)."""
        return bool(self._turns) or not self._writable.is_set()

    async def writable(self) -> bool:
        """Wait for a turn to write while the socket takes no more (ChannelClosed if the
        connection is lost meanwhile): confirmed publishes wait here, in order, instead of
        piling up in memory. Returns whether it waited for a turn: then :meth:`wrote` must
        follow the write.

        Turns are given a few at a time (TURN_BATCH) while the socket takes writes, not to
        every waiter at once: a burst of 100,000 sends would otherwise be written whole the
        moment the socket drained, and wait seconds in this process's buffer after it was
        written (a delayed message's levels delay is counted from its write).
        """
        if not self._turns and self._writable.is_set():
            return False
        if self.closed.done():
            raise self.closed.result()
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        self._grant()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given, and never to be used
                self.wrote()
            raise
        if self.closed.done():
            self.wrote()
            raise self.closed.result()
        return True

    def wrote(self) -> None:
        """A publisher given a turn by :meth:`writable` has written (or given up)."""
        self._granted -= 1
        self._grant()

    def _grant(self) -> None:
        turns = self._turns
        while (
            turns and self._granted < TURN_BATCH and (self._writable.is_set() or self.closed.done())
        ):
            turn = turns.popleft()
            if not turn.done():
                turn.set_result(None)
                self._granted += 1

    def forget(self, number: int) -> None:
        """Drop a closed channel; its number may be used again."""
        if self._channels.pop(number, None) is not None:
            heapq.heappush(self._free, number)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, endpoint: Endpoint, timeout: float) -> None:
        """The AMQP handshake: start, tune, open. Raises BrokerRefused if the broker refuses
        the login or the virtual host, BrokerUnavailable if the peer closes the connection
        (or is no AMQP broker at all), TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            try:
                await self._handshake_steps(endpoint)
            except BrokerUnavailable:
                if not self.closed.done():
                    raise
                raise self._why_closed(endpoint, self.closed.result()) from None
        if self._heartbeat:
            self._beats = asyncio.ensure_future(self._keep_alive(self._heartbeat))

    async def _handshake_steps(self, endpoint: Endpoint) -> None:
        start = await self._expect(commands.Connection.Start)
        self._step = "login"
        self.server_properties = dict(start.server_properties or {})
        if "PLAIN" not in str(start.mechanisms).split():
            raise BrokerUnavailable("the broker does not offer PLAIN authentication")
        response = f"\0{endpoint.user}\0{endpoint.password}"
        self.write(frames.marshal(0, commands.Connection.StartOk(
            client_properties=self._client_properties(), mechanism="PLAIN",
            response=response, locale="en_US",
        )))  # fmt: skip
        tune = await self._expect(commands.Connection.Tune)
        self._heartbeat = negotiate_heartbeat(endpoint.heartbeat, tune.heartbeat)
        self.frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self.channel_max = min(self.channel_max, tune.channel_max or NUMBERS)
        self.write(frames.marshal(0, commands.Connection.TuneOk(
            channel_max=self.channel_max, frame_max=self.frame_max,
            heartbeat=self._heartbeat,
        )))  # fmt: skip
        self._step = "open"
        self.write(frames.marshal(0, commands.Connection.Open(virtual_host=endpoint.vhost)))
        await self._expect(commands.Connection.OpenOk)
        self._step = "done"

    def _why_closed(self, endpoint: Endpoint, failure: ChannelClosed) -> BrokerUnavailable:
        """What the peer closing the connection during the handshake means, by its step."""
        where = endpoint.shown
        if self._step == "start":
            return BrokerUnavailable(
                f"the server at {where} does not speak AMQP 0-9-1: it did not answer the "
                f"protocol header with Connection.Start ({failure}); is this RabbitMQ's port "
                "(5672 for amqp://, 5671 for amqps://)?"
            )
        if self._step == "login" and failure.code == ACCESS_REFUSED:
            return BrokerRefused(
                f"RabbitMQ at {where} refused the login of user {endpoint.user!r} (wrong user "
                f"or password?): {failure}"
            )
        if self._step == "open" and failure.code in (ACCESS_REFUSED, NOT_ALLOWED):
            return BrokerRefused(
                f"RabbitMQ at {where} refused the virtual host {endpoint.vhost!r} (it does "
                f"not exist, or user {endpoint.user!r} has no permission there): {failure}"
            )
        return BrokerUnavailable(f"the broker closed the connection: {failure}")

    def handshake_timed_out(self, endpoint: Endpoint, timeout: float) -> BrokerUnavailable:
        """The error for a handshake that did not finish within ``timeout`` seconds."""
        if self._step == "start":
            return BrokerUnavailable(
                f"the server at {endpoint.shown} does not speak AMQP 0-9-1: no answer to the "
                f"protocol header within {timeout:g} s; is this RabbitMQ's port (5672 for "
                "amqp://, 5671 for amqps://)?"
            )
        return BrokerUnavailable(
            f"RabbitMQ at {endpoint.shown} did not complete the handshake within {timeout:g} s"
        )

    async def _expect(self, kind: type[Any]) -> Any:
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._handshake.get())
        closed: asyncio.Future[Any] = self.closed
        await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            raise BrokerUnavailable(f"the broker closed the connection: {self.closed.result()}")
        value = waiter.result()
        if not isinstance(value, kind):
            raise BrokerUnavailable(f"unexpected {type(value).__name__} from the broker")
        return value

    def _client_properties(self) -> dict[str, Any]:
        return {
            "product": "taskq",
            "connection_name": self.name,
            "capabilities": {
                "consumer_cancel_notify": True,
                "authentication_failure_close": True,
                "basic.nack": True,
                "publisher_confirms": True,
                "connection.blocked": True,
            },
        }

    async def _keep_alive(self, interval: int) -> None:
        # A heartbeat every interval/2; a broker silent for two intervals is dead.
        while not self.closed.done():
            await asyncio.sleep(interval / 2)
            self.write(frames.heartbeat())
            if time.monotonic() - self._last_read > 2 * interval:
                log.warning("no frame from the broker in %d s: closing %s", 2 * interval, self.name)
                self._fail(ChannelClosed("missed heartbeats"))
                if self._transport is not None:
                    self._transport.abort()

    async def channel(self) -> Channel:
        """Open a new channel, on the lowest free number: ChannelsExhausted if all
        ``channel_max`` are in use. A number is free again once its channel closed, by
        either side, with the close-ok sent or received (the broker forgets it then)."""
        if self.closed.done():
            raise self.closed.result()
        channel = Channel(self, self._number())
        self._channels[channel.number] = channel
        await channel.rpc(commands.Channel.Open())
        return channel

    def _number(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        if self._next > self.channel_max:
            # RabbitMQ would close the whole connection on one more (530, NOT_ALLOWED).
            raise ChannelsExhausted(
                f"all {self.channel_max} channels of connection {self.name} are open "
                f"(channel_max): too many operations at once on one connection"
            )
        self._next += 1
        return self._next - 1

    def _fail(self, exc: ChannelClosed) -> None:
        if self.closed.done():
            return
        self.closed.set_result(exc)
        self._writable.set()  # wakes the publishers waiting in writable(): they find it lost
        for turn in self._turns:
            if not turn.done():
                turn.set_result(None)
                self._granted += 1
        self._turns.clear()
        for channel in list(self._channels.values()):
            channel.closed(exc)
        if self._beats is not None:
            self._beats.cancel()
        if self._transport is not None:
            self._transport.close()

    async def close(self) -> None:
        """Close the connection politely (Connection.Close), then the socket."""
        if self.closed.done():
            return
        self.write(frames.marshal(0, commands.Connection.Close(200, "bye", 0, 0)))
        with contextlib.suppress(TimeoutError, BrokerUnavailable):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                while not isinstance(await self._expect(PamqpFrame), commands.Connection.CloseOk):
                    pass
        self._fail(ChannelClosed("closed by taskq", 200))
        await self.wait_lost()

    async def wait_lost(self) -> None:
        """Wait until the socket is closed (a close takes a loop turn or more to finish)."""
        if self._transport is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self._lost)


async def connect(
    endpoint: Endpoint, name: str, timeout: float, channel_max: int = CHANNEL_MAX
) -> Connection:
    """Open a Connection to ``endpoint`` within ``timeout`` seconds (TCP, TLS and the AMQP
    handshake together), with at most ``channel_max`` channels open at once (fewer if the
    broker says so); BrokerRefused if the broker refuses the login or the virtual host,
    BrokerUnavailable if it cannot be reached or does not answer as an AMQP broker."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    where = endpoint.shown
    if endpoint.client_name:
        name = f"{endpoint.client_name}:{name}"
    try:
        async with asyncio.timeout_at(deadline):
            _, connection = await loop.create_connection(
                lambda: Connection(name, channel_max), endpoint.host, endpoint.port,
                ssl=endpoint.tls,
                server_hostname=(endpoint.server_name or endpoint.host) if endpoint.tls else None,
            )  # fmt: skip
    except (OSError, TimeoutError) as exc:
        clear = describe_tls_failure(exc, where)
        raise BrokerUnavailable(clear or f"cannot connect to RabbitMQ at {where}: {exc}") from exc
    try:
        await connection.open(endpoint, max(deadline - loop.time(), 0.0))
    except TimeoutError as exc:
        connection._fail(ChannelClosed("handshake timed out"))
        await connection.wait_lost()
        raise connection.handshake_timed_out(endpoint, timeout) from exc
    except BaseException:
        connection._fail(ChannelClosed("handshake failed"))
        await connection.wait_lost()
        raise
    return connection


async def connect_any(
    endpoints: Sequence[Endpoint],
    name: str,
    timeout: float,
    first: int = 0,
    channel_max: int = CHANNEL_MAX,
) -> tuple[Connection, int]:
    """A Connection to the first of ``endpoints`` that answers, trying them in order from
    index ``first`` (wrapping around), and that one's index; BrokerUnavailable if none does
    (BrokerRefused if every one refused the login or the virtual host)."""
    failures: list[BrokerUnavailable] = []
    for step in range(len(endpoints)):
        index = (first + step) % len(endpoints)
        try:
            return await connect(endpoints[index], name, timeout, channel_max), index
        except BrokerUnavailable as exc:
            if len(endpoints) == 1:
                raise
            failures.append(exc)
    refused = all(isinstance(failure, BrokerRefused) for failure in failures)
    kind = BrokerRefused if refused else BrokerUnavailable
    raise kind("no broker URL answered: " + "; ".join(map(str, failures)))
