"""The Transport over aio-pika (``pip install 'taskq[aio-pika]'``, ``transport="aio-pika"``).

The same guarantees as the native client, with aio-pika's robust connection: two connections
(publishing and declaring on one, consuming on the other, opened at its first use), publisher
confirms on a channel whose returns raise (``on_return_raises``), persistent messages, a
channel per consumed queue with its own prefetch and manual acks, and after a reconnect the
queues, bindings and consumers that aio-pika's robust objects restore (declared and bound
through them for that reason). A publish or declare interrupted by a lost connection is made
again once the connection is back, within ``publish_timeout``. The topology is declared from
taskq.topology exactly as the native client declares it. The lease (periodic schedulers)
is in taskq.transport.aiopika_lease.

An application that already holds an aio-pika robust connection passes it as
``connection``: every channel then opens on it, and :meth:`close` leaves it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from .. import topology
from ..exceptions import BrokerError, LifecycleError, PublishError
from ..message import OutgoingMessage
from .aiopika_errors import LOST, is_lost, is_refusal, mapped, refused_this
from .aiopika_lease import AioPikaLease, connect
from .aiopika_properties import amqp_properties, flaws_of
from .aiopika_queues import RetriedAlone
from .aiopika_replies import ReplyQueue
from .aiopika_returns import OnePerId
from .connection import UNCONFIRMED_LIMIT
from .errors import PRECONDITION_FAILED
from .interface import NOT_FOUND, Cancel, QueueDepth, Reply
from .options import TransportOptions
from .shared import SharedMethods
from .wire import Delivery

log = logging.getLogger("taskq.transport")
T = TypeVar("T")
OnDelivery = Callable[[Delivery], None]


class _Settle:
    """What a Delivery needs to ack or reject an aio-pika message."""

    __slots__ = ("message",)

    def __init__(self, message: AbstractIncomingMessage) -> None:
        self.message = message

    @property
    def is_closed(self) -> bool:
        """Whether the channel the message came on has closed."""
        return bool(self.message.channel.is_closed)

    async def basic_ack(self, tag: int) -> None:
        with contextlib.suppress(*LOST):  # the channel is gone: the broker redelivers it
            await self.message.ack()

    async def basic_reject(self, tag: int, *, requeue: bool) -> None:
        with contextlib.suppress(*LOST):
            await self.message.reject(requeue=requeue)


def delivery_of(message: AbstractIncomingMessage, queue: str) -> Delivery:
    """A taskq Delivery of an aio-pika message (acked or rejected through aio-pika)."""
    expiration = message.expiration  # aio-pika decodes it to seconds
    headers = message.headers
    flaws = flaws_of(headers)
    props = {
        "headers": headers,
        "content_type": message.content_type,
        "message_id": message.message_id,
        "type": message.type,
        "priority": message.priority,
        "reply_to": message.reply_to,
        "correlation_id": message.correlation_id,
        "expiration": None if expiration is None else _milliseconds(expiration),
        "timestamp": message.timestamp,
    }
    return Delivery(
        message.body,
        props,
        message.delivery_tag or 0,
        bool(message.redelivered),
        message.routing_key,
        queue,
        _Settle(message),
        None,
        flaws,
    )


def _milliseconds(expiration: Any) -> str:
    seconds = expiration.total_seconds() if hasattr(expiration, "total_seconds") else expiration
    return str(int(float(seconds) * 1000))


class AioPikaTransport(SharedMethods):
    """The Transport of taskq.transport.interface, over aio-pika's robust connections."""

    def __init__(
        self,
        options: TransportOptions,
        *,
        connection_name: str = "taskq",
        connection: AbstractRobustConnection | None = None,
    ) -> None:
        self.options = options
        super().__init__()
        self.names = topology.Names(options.prefix)
        self._name = connection_name
        self._given = connection
        self._out: AbstractRobustConnection | None = None
        self._returnable = OnePerId()
        self._in: AbstractRobustConnection | None = None
        self._in_lock = asyncio.Lock()
        self._channels: dict[str, AbstractChannel] = {}
        self._channel_lock = asyncio.Lock()
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()
        self._held: dict[str, Cancel] = {}
        self._opened: list[AbstractChannel] = []  # long-lived channels, closed by close()

    @classmethod
    def from_connection(
        cls, connection: AbstractRobustConnection, options: TransportOptions
    ) -> AioPikaTransport:
        """A transport on the application's own aio-pika ``connection`` (never closed here)."""
        return cls(options, connection=connection)

    def __repr__(self) -> str:
        return f"<AioPikaTransport {self.options.shown} prefix={self.options.prefix!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def _open(self, role: str) -> AbstractRobustConnection:
        if self._given is not None:
            return self._given
        with mapped("connecting"):
            robust: AbstractRobustConnection = await connect(
                self.options, f"{self._name}:{role}", robust=True
            )
            return robust

    async def connect(self) -> None:
        """Open the publishing connection; BrokerUnavailable if the broker is down."""
        if self._out is not None:
            raise LifecycleError("transport already connected")
        self._out = await self._open("publish")
        with mapped("opening the channel of unconfirmed publishes"):
            await self._channel("plain")  # now: emit never waits for it (see _plain_now)

    async def _inbound(self) -> AbstractRobustConnection:
        self._require(self._out, "consume")
        async with self._in_lock:
            if self._in is None:
                self._in = await self._open("consume")
            return self._in

    async def close(self) -> None:
        """Close the connections this transport opened (idempotent)."""
        self.cancel_handlers()
        connections = {id(c): c for c in (self._in, self._out) if c is not None}
        self._in = self._out = None
        self._channels.clear()
        # On the application's connection, only what this transport opened is closed.
        closing = list(connections.values()) if self._given is None else self._opened
        self._opened = []
        for closable in closing:
            # aio-pika's close of a connection that is down can wait for ever: bounded.
            with contextlib.suppress(*LOST):
                await asyncio.wait_for(closable.close(), self.options.publish_timeout)

    @property
    def connected(self) -> bool:
        """Whether every opened connection is up now."""
        return all(
            c is None or (not c.is_closed and c.connected.is_set()) for c in (self._out, self._in)
        ) and (self._out is not None)

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting in the publishing socket's buffer (0 while it is down)."""
        transport = self._socket()
        return transport.get_write_buffer_size() if transport is not None else 0

    def _socket(self) -> asyncio.WriteTransport | None:
        out = self._out
        underlay = getattr(getattr(out, "transport", None), "connection", None)
        writer = getattr(underlay, "writer", None)
        return getattr(writer, "transport", None) if writer is not None else None

    def _require(self, value: T | None, what: str) -> T:
        if value is None:
            raise LifecycleError(f"{what}: the transport is not connected (use `async with app:`)")
        return value

    async def _channel(self, role: str) -> AbstractChannel:
        """The publishing connection's channel for ``role`` ('confirm', 'plain', 'admin',
        'get'), opened again if the broker closed it (a refusal closes its channel)."""
        out = self._require(self._out, role)
        channel = self._channels.get(role)
        if channel is not None and not channel.is_closed:
            return channel
        async with self._channel_lock:
            channel = self._channels.get(role)
            if channel is None or channel.is_closed:
                confirms = role == "confirm"
                channel = await out.channel(publisher_confirms=confirms, on_return_raises=confirms)
                self._opened.append(channel)
                self._channels[role] = channel
            return channel

    async def _patiently(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        refused: Callable[[BaseException], bool] = is_refusal,
    ) -> T:
        """``attempt()``, made again after the connection was lost, until ``publish_timeout``
        from now; a refusal (what ``refused`` says is one) is raised at once."""
        out = self._require(self._out, what)
        timeout = self.options.publish_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await attempt()
            except Exception as exc:
                if not is_lost(exc) or refused(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionError(
                        f"{exc!r}; the broker did not come back within publish_timeout "
                        f"({timeout:g} s)"
                    ) from exc
                log.warning("%s interrupted (%r); trying again", what, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(out.connected.wait(), left)

    # -- topology ----------------------------------------------------------------------------

    async def _declare(self, what: str, declare: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        async def attempt() -> T:
            return await declare(await self._channel("admin"))

        with mapped(what):
            return await self._patiently(what, attempt)

    async def declare_work_queue(self, queue: str, *, again: bool = False) -> None:
        """Declare a work queue, its exchanges, dead-letter queue and bindings (once)."""
        if again:
            self._declared.discard(queue)
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue not in self._declared:
                await self._declare(
                    f"declaring queue {queue!r}", lambda channel: self._queue_set(channel, queue)
                )
                self._declared.add(queue)

    async def _queue_set(self, channel: AbstractChannel, queue: str) -> None:
        names, o = self.names, self.options
        exchange = await _exchange(channel, names.exchange, "direct")
        dlx = await _exchange(channel, names.dlx, "direct")
        delivery = await _exchange(channel, names.delivery, "topic")
        arguments = topology.dead_queue_arguments(o.queue_type_of(queue))
        dead = await _queue(channel, names.dead_queue(queue), arguments)
        work_arguments = topology.work_queue_arguments(
            names, queue, max_priority=o.max_priority, queue_type=o.queue_type_of(queue)
        )
        hold_arguments = topology.hold_queue_arguments(names, queue, o.queue_type_of(queue))
        for route in topology.routes(queue, o.partitions_of(queue)):
            work = await _queue(channel, names.work_queue(route), work_arguments)
            await work.bind(exchange, route)
            for key in topology.delivery_bindings(route):
                await work.bind(delivery, key)
            hold = await _queue(channel, names.hold_queue(route), hold_arguments)
            await hold.bind(delivery, topology.hold_binding(route))
        await dead.bind(dlx, queue)

    async def _declare_delays(self, plan: topology.DelayDeclarations) -> None:
        await self._declare("declaring the delay levels", lambda channel: _path(channel, plan))

    async def declare_exchange(self, name: str, kind: str) -> None:
        """Declare one durable exchange of ``kind`` ('direct', 'topic' or 'fanout')."""
        await self._declare(
            f"declaring exchange {name!r}", lambda channel: _exchange(channel, name, kind)
        )

    async def _probe(self, what: str, request: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        """One request on a throwaway channel (a refusal closes the channel it was on)."""
        out = self._require(self._out, what)

        async def attempt() -> T:
            channel = await out.channel()
            try:
                return await request(channel)
            finally:
                if not channel.is_closed:
                    await channel.close()

        with mapped(what):
            return await self._patiently(what, attempt)

    async def queue_depth(self, queue_name: str) -> QueueDepth | None:
        """Ready messages and consumers of a queue (full name), or None if it does not exist."""

        async def passive(channel: AbstractChannel) -> Any:
            return (await channel.declare_queue(queue_name, passive=True)).declaration_result

        try:
            ok = await self._probe(f"asking for queue {queue_name!r}", passive)
        except BrokerError as exc:
            if exc.reply_code == NOT_FOUND:
                return None
            raise
        return QueueDepth(queue_name, ok.message_count or 0, ok.consumer_count or 0)

    async def argument_refusal(self, queue_name: str, arguments: dict[str, Any]) -> str | None:
        """None if declaring ``queue_name`` with ``arguments`` is accepted, else the refusal."""
        try:
            await self._probe(
                f"declaring queue {queue_name!r}",
                lambda channel: _queue(channel, queue_name, arguments),
            )
        except BrokerError as exc:
            if exc.reply_code == PRECONDITION_FAILED and exc.__cause__ is not None:
                return str(exc.__cause__.args[-1] if exc.__cause__.args else exc.__cause__)
            raise
        return None

    async def server_properties(self) -> dict[str, Any]:
        """What the broker said of itself when the publishing connection opened."""
        out = self._require(self._out, "server_properties")
        with mapped("waiting for the connection"):
            await asyncio.wait_for(out.connected.wait(), self.options.publish_timeout)
            underlay = out.transport.connection  # type: ignore[union-attr]
            return dict(underlay.server_properties)

    async def purge(self, queue_name: str) -> int:
        """Remove every ready message from a queue by its full name; return how many."""
        if await self.queue_depth(queue_name) is None:
            raise BrokerError(f"no queue named {queue_name!r}", reply_code=NOT_FOUND)

        async def purge(channel: AbstractChannel) -> int:
            ok = await (await channel.get_queue(queue_name, ensure=False)).purge()
            return int(ok.message_count or 0)

        return await self._declare(f"purging queue {queue_name!r}", purge)

    def beat_lease(self, holder: str) -> AioPikaLease:
        """A bid of ``holder`` for the periodic schedulers' lease (see aiopika_lease)."""
        names, quorum = self.names, self.options.any_quorum
        return AioPikaLease(
            self.options,
            f"taskq-beat:{holder}",
            (names.beat_lease, topology.beat_lease_arguments(quorum)),
            (names.beat_status, topology.beat_status_arguments(quorum)),
        )

    async def delete_queue(self, queue_name: str) -> None:
        """Delete a queue by its full name (nothing happens if it does not exist)."""
        await self._declare(
            f"deleting queue {queue_name!r}", lambda channel: channel.queue_delete(queue_name)
        )

    async def delete_exchange(self, name: str) -> None:
        """Delete an exchange by its full name (nothing happens if it does not exist)."""
        await self._declare(
            f"deleting exchange {name!r}", lambda channel: channel.exchange_delete(name)
        )

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: OutgoingMessage,
        *,
        mandatory: bool = True,
        delivered: asyncio.Future[None] | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm; PublishError if returned or nacked, a
        lost connection waited out until ``publish_timeout`` (then BrokerUnavailable).
        ``delivered`` is not used: aiormq's confirm is awaited inside ``basic_publish``."""
        if mandatory and message.message_id is None:  # aiormq matches a return by it
            message = dataclasses.replace(message, message_id=uuid.uuid4().hex)
        tried = False

        async def attempt() -> None:
            nonlocal message, tried
            if tried and message.resend is not None:  # the first may have arrived: the copy
                message = message.resend()
            tried = True
            channel = await (await self._channel("confirm")).get_underlay_channel()
            target, key = exchange, routing_key
            if message.route_when_written is not None:  # as late as aiormq lets it be
                target, key = message.route_when_written()
            await channel.basic_publish(
                message.body,
                exchange=target,
                routing_key=key,
                properties=amqp_properties(message, channel),
                mandatory=mandatory,
            )

        what = f"publishing message {message.message_id} to {exchange!r}/{routing_key!r}"

        # A refusal closes the channel, and with it the confirms of the publishes written
        # behind the refused one: those are sent again on a new channel, the refused one fails.
        def refused(exc: BaseException) -> bool:
            return refused_this(exc, exchange, len(message.body))

        returnable = message.message_id if mandatory else None  # see aiopika_returns
        with mapped(what, PublishError):
            async with (
                self._returnable.hold(returnable)
                if returnable is not None
                else contextlib.nullcontext()
            ):
                await self._patiently("publish", attempt, refused)

    async def notify(self, routing_key: str, message: OutgoingMessage) -> None:
        """Publish transient, unconfirmed, non-mandatory on the default exchange (replies)."""
        await self.emit("", [(routing_key, message)])

    async def emit(self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]) -> int:
        """Publish unconfirmed and non-mandatory, never waiting for the socket; return how
        many were dropped: all of them while the connection is down, and, counted in
        :attr:`dropped`, those that find no room (see :func:`has_room`) while the broker
        reads nothing, as the native client drops them."""
        sent = 0
        try:
            underlay = await self._plain_now().get_underlay_channel()
            channel = cast(aiormq.Channel, underlay)  # ``wait`` is not on the abstract one
            for routing_key, message in messages:
                if not has_room(channel):
                    break
                await channel.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=amqp_properties(message, channel),
                    wait=False,  # aiormq would wait for the socket to drain: for ever, blocked
                )
                sent += 1
        except LOST as exc:
            log.warning("%d unconfirmed message(s) not sent: %r", len(messages) - sent, exc)
            return len(messages) - sent
        self.count_dropped(len(messages) - sent, f"{self._name}:publish", UNCONFIRMED_LIMIT)
        return len(messages) - sent

    def _plain_now(self) -> AbstractChannel:
        """The channel of unconfirmed publishes if it is open now; else ConnectionError, and
        it is opened again in the background. Never waited for: opening a channel waits for
        the broker's answer, which a broker that reads nothing does not give, and aio-pika's
        open does not give way to a cancel either."""
        channel = self._channels.get("plain")
        if channel is not None and not channel.is_closed:
            return channel
        if not any(task.get_name() == "taskq-plain-channel" for task in self._handlers):
            task = asyncio.ensure_future(self._reopen_plain())
            task.set_name("taskq-plain-channel")
            self._handlers.add(task)
            task.add_done_callback(_forget(self._handlers))
        raise ConnectionError("the channel of unconfirmed publishes is being opened again")

    async def _reopen_plain(self) -> None:
        await self._channel("plain")

    # -- consuming ---------------------------------------------------------------------------

    async def _subscribe(
        self,
        queue: Callable[[AbstractChannel], Awaitable[AbstractQueue]],
        on_message: Callable[[AbstractIncomingMessage], None],
        *,
        prefetch: int = 0,
        acks: bool = True,
        arguments: dict[str, Any] | None = None,
    ) -> Cancel:
        """A channel of its own on the consuming connection (restored by aio-pika after a
        reconnect, with its queue, bindings and consumer), consuming ``queue(channel)`` with
        the consumer ``arguments``."""
        inbound = await self._inbound()
        channel = await inbound.channel()
        self._opened.append(channel)
        await channel.set_qos(prefetch_count=prefetch)
        consumed = await queue(channel)

        async def callback(message: AbstractIncomingMessage) -> None:
            try:
                on_message(message)
            except Exception:  # one delivery fails alone, never the consumer or connection
                log.exception("consumer of %s failed on a delivery: rejected", consumed.name)
                if acks:
                    with contextlib.suppress(*LOST):
                        await message.reject(requeue=False)

        tag = await consumed.consume(callback, no_ack=not acks, arguments=arguments)

        async def cancel() -> None:
            # A robust queue's cancel waits for the connection to come back: bounded.
            with contextlib.suppress(*LOST):
                await asyncio.wait_for(consumed.cancel(tag), self.options.publish_timeout)

        return cancel

    async def consume(
        self, queue: str, on_delivery: OnDelivery, *, prefetch: int, held: bool = False
    ) -> Cancel:
        """Consume work queue ``queue`` (or its hold queue) with manual acks and ``prefetch``
        on its own channel."""
        full = self.names.hold_queue(queue) if held else self.names.work_queue(queue)

        def on_message(message: AbstractIncomingMessage) -> None:
            on_delivery(delivery_of(message, queue))

        # A passive declare through the robust channel registers the queue with aio-pika:
        # after a broker cancel (the queue was deleted) it probes the queue until it is back
        # (declared again by the next send) and consumes again.
        def declare(channel: AbstractChannel) -> Awaitable[AbstractQueue]:
            # This channel's queue is restored alone after a reconnect (see aiopika_queues).
            setattr(channel, "QUEUE_CLASS", RetriedAlone)  # noqa: B010 - not on the ABC
            return channel.declare_queue(full, passive=True)

        with mapped(f"consuming queue {queue!r}"):
            return await self._subscribe(declare, on_message, prefetch=prefetch)

    async def consume_replies(
        self, queue_name: str, on_reply: Reply, *, expires: float, on_lost: Callable[[str], None]
    ) -> Cancel:
        """Declare a durable reply queue with ``x-expires`` and consume it without acks; after
        a reconnect, if it expired meanwhile, a queue with a new name replaces it and
        ``on_lost(new name)`` is called (see taskq.transport.aiopika_replies)."""
        arguments = topology.reply_queue_arguments(expires, self.options.any_quorum)
        replies = ReplyQueue(
            await self._inbound(),
            queue_name,
            arguments,
            on_reply,
            on_lost,
            new_name=lambda: self.names.reply_queue(uuid.uuid4().hex),
            timeout=self.options.publish_timeout,
        )
        with mapped(f"consuming reply queue {queue_name!r}"):
            await replies.start()
        return replies.cancel

    @contextlib.asynccontextmanager
    async def reply_inbox(self, on_reply: Reply) -> AsyncIterator[str]:
        """A short-lived exclusive reply queue on a channel of its own, closed on exit."""
        inbound = await self._inbound()
        doing = mapped("opening a reply queue")
        with doing:
            channel = await inbound.channel()
        try:
            with doing:
                queue = await channel.declare_queue(exclusive=True, auto_delete=True)

                async def callback(message: AbstractIncomingMessage) -> None:
                    on_reply(message.correlation_id, message.body, message.type)

                await queue.consume(callback, no_ack=True)
            yield queue.name
        finally:
            with contextlib.suppress(*LOST):
                await asyncio.wait_for(channel.close(), self.options.publish_timeout)

    async def get(self, queue_name: str) -> Delivery | None:
        """Fetch one message unacked (basic.get) on a channel of its own, or None if empty."""

        async def attempt() -> AbstractIncomingMessage | None:
            channel = await self._channel("get")
            queue = await channel.get_queue(queue_name, ensure=False)
            return await queue.get(no_ack=False, fail=False)

        with mapped(f"reading queue {queue_name!r}"):
            got = await self._patiently("basic.get", attempt)
        return None if got is None else delivery_of(got, queue_name)

    # -- control plane and events ------------------------------------------------------------

    async def listen(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_delivery: OnDelivery,
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Like :meth:`consume_bound`, with ``on_delivery`` called synchronously."""

        async def declare(channel: AbstractChannel) -> AbstractQueue:
            queue = await channel.declare_queue(
                queue_name, exclusive=True, auto_delete=True, arguments=arguments
            )
            await queue.bind(exchange, routing_key)
            return queue

        def on_message(message: AbstractIncomingMessage) -> None:
            on_delivery(delivery_of(message, queue_name))

        with mapped(f"consuming queue {queue_name!r}"):
            await self._subscribe(declare, on_message, acks=False)

    async def hold(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue and keep a consumer on it while this transport lives."""
        with mapped(f"holding queue {queue_name!r}"):
            self._held[queue_name] = await self._subscribe(
                lambda channel: _queue(channel, queue_name, arguments), _ignore, acks=False
            )

    async def declare_queue(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue by its full name with ``arguments`` (idempotent)."""
        await self._declare(
            f"declaring queue {queue_name!r}",
            lambda channel: _queue(channel, queue_name, arguments),
        )

    async def _declare_exclusive(self, queue_name: str) -> None:
        # Not robust: a queue aio-pika declared again after a reconnect would be a slot
        # claimed behind the caller's back (see taskq.limits.concurrency).
        async def attempt() -> None:
            channel = await self._channel("claim")  # a refusal closes it; others keep theirs
            await cast(Any, channel).declare_queue(queue_name, exclusive=True, robust=False)

        with mapped(f"claiming queue {queue_name!r}"):
            await self._patiently("queue.declare", attempt)

    async def read_stream(
        self,
        queue_name: str,
        on_delivery: OnDelivery,
        *,
        arguments: dict[str, Any],
        prefetch: int,
    ) -> Cancel:
        """Declare stream queue ``queue_name`` and read it from its first message with manual
        acks (aio-pika consumes again with the same offset after a reconnect)."""

        def on_message(message: AbstractIncomingMessage) -> None:
            on_delivery(delivery_of(message, queue_name))

        with mapped(f"reading stream {queue_name!r}"):
            return await self._subscribe(
                lambda channel: _queue(channel, queue_name, arguments),
                on_message,
                prefetch=prefetch,
                arguments={"x-stream-offset": "first"},
            )

    async def release(self, queue_name: str) -> None:
        """Stop holding ``queue_name`` and delete it."""
        cancel = self._held.pop(queue_name, None)
        if cancel is not None:
            await cancel()
        await self.delete_queue(queue_name)


def _forget(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    """A done callback that drops a background task from ``tasks``; its failure (the
    connection is down) is retrieved, the next use tries again."""

    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()

    return done


def has_room(channel: Any) -> bool:
    """Whether an unconfirmed publish on aiormq ``channel`` can be written without waiting:
    aiormq's write queue has a free place (its writer is not stuck draining a confirmed
    publish into a socket the broker does not read) and fewer than ``UNCONFIRMED_LIMIT``
    bytes wait in the socket's buffer (what the native client allows, see
    Connection.has_room)."""
    connection = channel.connection
    if connection.write_queue.full():
        return False
    writer = getattr(connection, "writer", None)
    socket = getattr(writer, "transport", None)
    return socket is None or socket.get_write_buffer_size() < UNCONFIRMED_LIMIT


def _ignore(message: AbstractIncomingMessage) -> None:
    """Deliveries to a held queue mean nothing (nobody publishes there)."""


async def _exchange(
    channel: AbstractChannel, name: str, kind: str
) -> aio_pika.abc.AbstractExchange:
    return await channel.declare_exchange(name, kind, durable=True)


async def _queue(channel: AbstractChannel, name: str, arguments: dict[str, Any]) -> AbstractQueue:
    return await channel.declare_queue(name, durable=True, arguments=arguments)


async def _path(channel: AbstractChannel, plan: topology.DelayDeclarations) -> None:
    """Declare ``plan`` on ``channel``, one method at a time."""
    exchanges = {name: await _exchange(channel, name, "topic") for name in plan.exchanges}
    queues = {name: await _queue(channel, name, arguments) for name, arguments in plan.queues}
    for queue, exchange, key in plan.queue_bindings:
        await queues[queue].bind(exchange, key)
    for destination, source, key in plan.exchange_bindings:
        target = exchanges.get(destination)
        if target is None:
            target = await channel.get_exchange(destination, ensure=False)
        await target.bind(source, key)
