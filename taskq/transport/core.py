"""The Transport: everything an App or a worker does with RabbitMQ, behind one class.

Two connections (:class:`~taskq.transport.link.Link`, reconnecting on their own): one
publishes (publisher confirms, mandatory publishes whose returns raise) and declares, one
consumes (work queues, the reply queue, the control queue). A blocked publisher (RabbitMQ's
memory alarm blocks publishing connections) then never stalls the acks of the consumer. The
consuming connection is opened at its first use, so a client with a durable result store has
one connection.

A publish that fails because the connection dropped is retried after the reconnect, up to
``publish_timeout`` (so it may be duplicated, never lost: at-least-once); so are declares,
deletes, purges and basic.gets, which may be repeated. No error of the AMQP client leaves this
class: every public method raises taskq.exceptions only (see :mod:`taskq.transport.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from pamqp import commands

from .. import topology
from ..exceptions import BrokerError, EncodeError, LifecycleError, PublishError
from ..message import OutgoingMessage
from .connection import NOT_FOUND, UNCONFIRMED_LIMIT, Channel, ChannelClosed, Nacked, Returned
from .errors import PRECONDITION_FAILED, broker_error, is_refusal, mapped
from .interface import QueueDepth, Reply
from .lease import NativeLease
from .link import ChannelSlot, Link
from .options import TransportOptions
from .shared import SharedMethods
from .wire import Delivery, properties

log = logging.getLogger("taskq.transport")
T = TypeVar("T")

PUBLISH_BATCH = 256
"""Messages of a batch publish written in one event-loop turn."""


async def _confirm_mode(channel: Channel) -> str | None:
    await channel.confirm_mode()
    return None


class NativeTransport(SharedMethods):
    """Connections, channels, topology and publishing for one App (client or worker), over
    taskq's own AMQP client: the default implementation of taskq.transport.Transport."""

    def __init__(self, options: TransportOptions, *, connection_name: str = "taskq") -> None:
        super().__init__()
        self.options = options
        self.names = topology.Names(options.prefix)
        self._connection_name = connection_name
        self._endpoints = options.endpoints
        self._out: Link | None = None
        self._in: Link | None = None
        self._in_lock = asyncio.Lock()
        self._confirm: ChannelSlot | None = None
        self._plain: ChannelSlot | None = None
        self._admin: ChannelSlot | None = None
        self._getter: ChannelSlot | None = None
        self._claimer: ChannelSlot | None = None
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()
        self._held: dict[str, Callable[[], Awaitable[None]]] = {}

    def __repr__(self) -> str:
        return f"<NativeTransport {self.options.shown} prefix={self.options.prefix!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def _link(self, role: str) -> Link:
        s = self.options
        return Link(
            self._endpoints, f"{self._connection_name}:{role}", s.connect_timeout, s.channel_max
        )

    async def connect(self) -> None:
        """Open the publishing connection; BrokerUnavailable if the broker is down."""
        if self._out is not None:
            raise LifecycleError("transport already connected")
        out = self._link("publish")
        with mapped("connecting"):
            await out.start()
        self._out = out
        self._confirm = ChannelSlot(out, _confirm_mode)
        self._plain = ChannelSlot(out)
        self._admin = ChannelSlot(out)
        self._getter = ChannelSlot(out)
        self._claimer = ChannelSlot(out)

    async def _inbound(self) -> Link:
        """The consuming connection, opened at the first use."""
        self._require(self._out, "consume")
        async with self._in_lock:
            if self._in is None:
                inbound = self._link("consume")
                with mapped("connecting to consume"):
                    await inbound.start()
                self._in = inbound
            return self._in

    async def close(self) -> None:
        """Close every connection (idempotent)."""
        self.cancel_handlers()
        links = (self._in, self._out)
        self._in = self._out = None
        self._confirm = self._plain = self._admin = self._getter = None  # used now: LifecycleError
        self._claimer = None
        for link in links:
            if link is not None:
                await link.close()

    @property
    def connected(self) -> bool:
        """Whether every opened connection is up now."""
        return (
            self._out is not None
            and self._out.connected
            and (self._in is None or self._in.connected)
        )

    def _require(self, value: Any, what: str) -> Any:
        if value is None:
            raise LifecycleError(f"{what}: the transport is not connected (use `async with app:`)")
        return value

    # -- topology ----------------------------------------------------------------------------

    async def _patiently(self, what: str, attempt: Callable[[float], Awaitable[T]]) -> T:
        """``attempt(seconds it may wait for the connection)``, made again after the
        connection was lost, until ``publish_timeout`` from now; then the last ChannelClosed
        (which says so). A refusal is raised at once: repeating would repeat it."""
        timeout = self.options.publish_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await attempt(max(deadline - time.monotonic(), 0.0))
            except ChannelClosed as exc:
                if is_refusal(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise ChannelClosed(
                        f"{exc}; the broker did not come back within publish_timeout "
                        f"({timeout:g} s)"
                    ) from exc
                log.warning("%s interrupted (%s); trying again", what, exc)

    async def _rpc(self, request: Any, *, after: Sequence[Any] = ()) -> Any:
        """One method on the declaring channel (after ``after``, sent first with nowait),
        made again after a reconnect within ``publish_timeout``. ChannelClosed as it comes:
        callers map it (a refusal of 406 is a TopologyMismatch)."""
        slot: ChannelSlot = self._require(self._admin, "declare")

        async def attempt(timeout: float) -> Any:
            channel = await slot.get(timeout)
            return await channel.rpc(request, after=after)

        return await self._patiently(type(request).__name__, attempt)

    async def declare_work_queue(self, queue: str, *, again: bool = False) -> None:
        """Declare (idempotently) everything a work queue needs: its exchange, dead-letter
        exchange and ``.dead`` queue, and its binding from the delay levels' delivery exchange.
        Once per transport, unless ``again`` (it was deleted since: a publish came back)."""
        if again:
            self._declared.discard(queue)
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue in self._declared:
                return
            with mapped(f"declaring queue {queue!r}"):
                await self._declare_queue_set(queue)
            self._declared.add(queue)

    async def _declare_queue_set(self, queue: str) -> None:
        names, s = self.names, self.options
        dead = names.dead_queue(queue)
        work_arguments = topology.work_queue_arguments(
            names, queue, max_priority=s.max_priority, queue_type=s.queue_type_of(queue)
        )
        methods: list[Any] = [
            _exchange_declare(names.exchange, "direct"),
            _exchange_declare(names.dlx, "direct"),
            _exchange_declare(names.delivery, "topic"),
            _queue_declare(dead, topology.dead_queue_arguments(s.queue_type_of(queue))),
        ]
        # Every partition dead-letters under the logical name (one .dead queue) and, quorum,
        # gets its leader on the node with the fewest (x-queue-leader-locator: balanced).
        hold_arguments = topology.hold_queue_arguments(names, queue, s.queue_type_of(queue))
        for route in topology.routes(queue, s.partitions_of(queue)):
            methods += _work_queue_methods(names, route, work_arguments)
            methods += _hold_queue_methods(names, route, hold_arguments)
        for method in methods:
            method.nowait = True
        await self._rpc(commands.Queue.Bind(queue=dead, exchange=names.dlx, routing_key=queue),
                        after=methods)  # fmt: skip

    async def _declare_delays(self, plan: topology.DelayDeclarations) -> None:
        # Sent in one write with nowait, answered by the broker once (one round trip).
        methods: list[Any] = [_exchange_declare(name, "topic") for name in plan.exchanges]
        methods += [_queue_declare(name, arguments) for name, arguments in plan.queues]
        methods += [
            commands.Queue.Bind(queue=queue, exchange=exchange, routing_key=key)
            for queue, exchange, key in plan.queue_bindings
        ]
        methods += [
            commands.Exchange.Bind(destination=destination, source=source, routing_key=key)
            for destination, source, key in plan.exchange_bindings
        ]
        for method in methods:
            method.nowait = True
        last = _exchange_declare(self.names.delivery, "topic")
        with mapped("declaring the delay levels"):
            await self._rpc(last, after=methods)

    async def declare_exchange(self, name: str, kind: str) -> None:
        """Declare one durable exchange of ``kind`` ('direct', 'topic' or 'fanout')."""
        with mapped(f"declaring exchange {name!r}"):
            await self._rpc(_exchange_declare(name, kind))

    async def queue_depth(self, queue_name: str) -> QueueDepth | None:
        """Ready messages and consumers of a queue (full name), or None if it does not exist."""
        try:
            with mapped(f"asking for queue {queue_name!r}"):
                ok = await self._probe(commands.Queue.Declare(queue=queue_name, passive=True))
        except BrokerError as exc:
            if exc.reply_code == NOT_FOUND:
                return None
            raise
        return QueueDepth(queue_name, ok.message_count or 0, ok.consumer_count or 0)

    async def argument_refusal(self, queue_name: str, arguments: dict[str, Any]) -> str | None:
        """Declare queue ``queue_name`` with ``arguments``: None if the broker agrees, else its
        refusal (``inequivalent arg 'x-max-priority' ... received '10' but current is '5'``).

        A declare creates a queue that does not exist: ask only about existing queues.
        """
        try:
            with mapped(f"declaring queue {queue_name!r}"):
                await self._probe(_queue_declare(queue_name, arguments))
        except BrokerError as exc:
            if exc.reply_code == PRECONDITION_FAILED and isinstance(exc.__cause__, ChannelClosed):
                return str(exc.__cause__)
            raise
        return None

    async def server_properties(self) -> dict[str, Any]:
        """What the broker said of itself when the publishing connection opened
        (``product``, ``version``, ``cluster_name``...)."""
        out: Link = self._require(self._out, "server_properties")
        with mapped("waiting for the connection"):
            connection = await out.connection(self.options.publish_timeout)
        return dict(connection.server_properties)

    async def _probe(self, request: Any) -> Any:
        """One method on a throwaway channel (a refused declare closes the channel it was
        on), made again after a reconnect within ``publish_timeout``."""
        out: Link = self._require(self._out, "probe")

        async def attempt(timeout: float) -> Any:
            probe = await (await out.connection(timeout)).channel()
            try:
                return await probe.rpc(request)
            finally:
                await probe.close()

        return await self._patiently(type(request).__name__, attempt)

    async def purge(self, queue_name: str) -> int:
        """Remove every ready message from a queue by its full name; return how many."""
        if await self.queue_depth(queue_name) is None:
            raise BrokerError(f"no queue named {queue_name!r}", reply_code=NOT_FOUND)
        with mapped(f"purging queue {queue_name!r}"):
            ok = await self._rpc(commands.Queue.Purge(queue=queue_name))
        return int(ok.message_count or 0)

    def beat_lease(self, holder: str) -> NativeLease:
        """A bid of ``holder`` (a scheduler's name) for the periodic schedulers' lease, on a
        connection of its own named ``taskq-beat:{holder}`` (see taskq.transport.lease)."""
        names, s = self.names, self.options
        return NativeLease(
            self._endpoints,
            f"taskq-beat:{holder}",
            (names.beat_lease, topology.beat_lease_arguments(s.any_quorum)),
            (names.beat_status, topology.beat_status_arguments(s.any_quorum)),
            connect_timeout=s.connect_timeout,
            commit_timeout=s.publish_timeout,
        )

    async def delete_queue(self, queue_name: str) -> None:
        """Delete a queue by its full name (nothing happens if it does not exist)."""
        with mapped(f"deleting queue {queue_name!r}"):
            await self._rpc(commands.Queue.Delete(queue=queue_name))

    async def delete_exchange(self, name: str) -> None:
        """Delete an exchange by its full name (nothing happens if it does not exist)."""
        with mapped(f"deleting exchange {name!r}"):
            await self._rpc(commands.Exchange.Delete(exchange=name))

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
        """Publish and wait for the broker's confirm. An unroutable or nacked publish raises
        PublishError; a dropped connection is waited out and the publish retried until
        ``publish_timeout``, then BrokerUnavailable.

        Once ``delivered`` is resolved (the task's outcome came back: a worker received the
        message), it returns without waiting for the confirm any longer: a persistent
        message's confirm comes only once it is on disk or acked by its consumer, which for
        a short task is after its outcome was already back with the sender."""
        slot: ChannelSlot = self._require(self._confirm, "publish")
        if mandatory and message.message_id is None:  # a return is matched to its publish by it
            message = dataclasses.replace(message, message_id=uuid.uuid4().hex)
        props = properties(message)
        # Inline rather than through _patiently: this is the hot path, and a closure and two
        # more coroutines per send doubled the garbage collector's work under load.
        timeout = self.options.publish_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                channel = await slot.get(max(deadline - time.monotonic(), 0.0))
                connection = channel.connection
                # The broker reads nothing: wait for a turn, do not pile up.
                waited = connection.must_wait() and await connection.writable()
                try:
                    if message.route_when_written is not None:
                        exchange, routing_key = message.route_when_written()
                    confirm = channel.publish(exchange, routing_key, message.body, props,
                                              mandatory=mandatory)  # fmt: skip
                finally:
                    if waited:
                        connection.wrote()
                assert confirm is not None
                _settle_on(delivered, confirm)
                await confirm
                return
            except ChannelClosed as exc:
                if is_refusal(exc):
                    failure: Exception = exc
                elif time.monotonic() < deadline:
                    log.warning("publish interrupted (%s); trying again", exc)
                    if message.resend is not None:  # the first may have arrived: the copy
                        message = message.resend()
                        props = properties(message)
                    continue
                else:
                    failure = ChannelClosed(
                        f"{exc}; the broker did not come back within publish_timeout "
                        f"({timeout:g} s)"
                    )
            except (Returned, Nacked) as exc:
                failure = exc
            what = f"publishing message {message.message_id} to {exchange!r}/{routing_key!r}"
            raise broker_error(failure, what, PublishError) from failure

    async def publish_each(
        self, items: Sequence[tuple[str, str, OutgoingMessage]]
    ) -> list[BaseException | None]:
        """Publish ``(exchange, routing_key, message)`` items with pipelined confirms; return
        what became of each (None: confirmed; see ``Transport.publish_each``).

        Written ``PUBLISH_BATCH`` at a time, one event-loop turn each, with no coroutine per
        message: the broker works on the first messages while the rest are written, and their
        confirms are read meanwhile; then the confirms are awaited together. A message whose
        channel closed before its confirm (or before it was written) goes through
        :meth:`publish`, which waits out the reconnect (a written one as its ``resend`` copy).
        """
        slot: ChannelSlot = self._require(self._confirm, "publish")
        results: list[BaseException | None] = [None] * len(items)
        confirms: list[tuple[int, asyncio.Future[None]]] = []
        written = 0
        again: list[int] = []
        try:
            while written < len(items):
                # Not waiting for a reconnect here: publish() below does, message by message.
                channel = await slot.get(0)
                connection = channel.connection
                waited = connection.must_wait() and await connection.writable()
                try:
                    end = min(written + PUBLISH_BATCH, len(items))
                    while written < end:
                        confirm = _write(channel, items[written])
                        if isinstance(confirm, EncodeError):  # properties the broker refuses
                            results[written] = confirm
                        else:
                            confirms.append((written, confirm))
                        written += 1
                finally:
                    if waited:
                        connection.wrote()
                if written < len(items):
                    await asyncio.sleep(0)  # this batch is written at the end of this turn
        except ChannelClosed:
            again += range(written, len(items))
        resend = await _settle(items, confirms, results)
        if again or resend:
            log.warning("batch publish interrupted; %d message(s) go again", len(again + resend))
            retried = await asyncio.gather(
                *(self.publish(*items[i]) for i in again),
                *(self.publish(*_copy(items[i])) for i in resend),
                return_exceptions=True,
            )
            for index, result in zip(again + resend, retried, strict=True):
                results[index] = result
        return results

    async def notify(self, routing_key: str, message: OutgoingMessage) -> None:
        """Publish a transient, unconfirmed, non-mandatory message on the default exchange
        (status updates to a reply queue). Replies to a queue that is gone are dropped by design;
        so are they while the broker reads nothing (see :attr:`dropped`)."""
        await self._unconfirmed("", [(routing_key, message)])

    async def emit(self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]) -> int:
        """Publish ``(routing_key, message)`` items unconfirmed and non-mandatory to
        ``exchange`` (events: telemetry that may be dropped, never waited for); return how many
        were dropped. Lost while the connection is down, with a warning; dropped, counted in
        :attr:`dropped`, once the broker reads nothing and ``UNCONFIRMED_LIMIT`` bytes wait."""
        return await self._unconfirmed(exchange, messages)

    @property
    def buffered_bytes(self) -> int:
        """Bytes this process holds for the publishing connection's socket (0 while it is
        down): at most about ``UNCONFIRMED_LIMIT`` plus the confirmed publishes under way."""
        out = self._out
        connection = out.current if out is not None else None
        return connection.buffered if connection is not None else 0

    async def _unconfirmed(
        self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]
    ) -> int:
        """Write ``messages`` without waiting for anything; return how many were dropped:
        all of them while the connection is down, and those that find no room (see
        Connection.has_room) while the broker reads nothing."""
        slot: ChannelSlot = self._require(self._plain, "notify")
        sent = 0
        try:
            channel = await slot.get(0)
            room = channel.connection.has_room
            for routing_key, message in messages:
                if not room():
                    break
                channel.publish(exchange, routing_key, message.body, properties(message),
                                mandatory=False)  # fmt: skip
                sent += 1
        except ChannelClosed as exc:
            log.warning("%d unconfirmed message(s) not sent: %s", len(messages) - sent, exc)
            return len(messages) - sent
        self.count_dropped(
            len(messages) - sent, f"{self._connection_name}:publish", UNCONFIRMED_LIMIT
        )
        return len(messages) - sent

    # -- consuming ---------------------------------------------------------------------------

    async def consume(
        self,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int,
        held: bool = False,
    ) -> Callable[[], Awaitable[None]]:
        """Consume work queue ``queue`` (short name, or the route of one partition, such as
        ``orders.3``: deliveries carry it as their queue) with manual acks; return a cancel
        function.

        Each queue gets a channel of its own with ``prefetch`` as its limit, so a worker on k
        queues holds at most k x prefetch unacked deliveries (per-consumer QoS: RabbitMQ 4.3
        refuses the global flag, and quorum queues never supported it). Acks are coalesced per
        channel (wire.acker_of), never per queue. ``on_delivery`` is called synchronously and
        must not block: it hands the delivery to its owner. A cancel stops deliveries; the
        channel stays open for the acks of what still runs.
        """
        inbound = await self._inbound()
        full = self.names.hold_queue(queue) if held else self.names.work_queue(queue)
        with mapped(f"consuming queue {full!r}"):
            return await inbound.subscribe(full, queue, on_delivery, prefetch=prefetch)

    async def consume_replies(
        self, queue_name: str, on_reply: Reply, *, expires: float, on_lost: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]]:
        """Declare a reply queue that outlives a reconnect, and consume it without acks.

        The queue is durable and not exclusive, so replies published while this client
        reconnects wait in it; ``x-expires`` removes it once nobody has used it for
        ``expires`` seconds (a client that died). After a reconnect the queue is checked
        before it is declared again: if it expired meanwhile, replies sent to it were dropped
        by the broker. Then a reply queue with a new name replaces it (a name that was gone
        never comes back, so workers may stop replying to it for good), and
        ``on_lost(new name)`` is called so that waiters learn it at once. Returns a cancel
        function.
        """
        arguments = topology.reply_queue_arguments(expires, self.options.any_quorum)
        current, reconnected = queue_name, False

        async def declare(channel: Channel) -> str:
            nonlocal current, reconnected
            lost = reconnected and not await _exists(channel, current)
            if lost:
                current = self.names.reply_queue(uuid.uuid4().hex)
            reconnected = True
            await channel.rpc(
                commands.Queue.Declare(queue=current, durable=True, arguments=arguments)
            )
            if lost:
                # Only now: a caller told at once may send again right away, and its reply
                # must find the new queue (replies wait in it until the consumer starts).
                on_lost(current)
            return current

        inbound = await self._inbound()
        with mapped(f"consuming reply queue {queue_name!r}"):
            return await inbound.subscribe(
                queue_name, "", _replies_to(on_reply), acks=False, prepare=declare
            )

    @contextlib.asynccontextmanager
    async def reply_inbox(self, on_reply: Reply) -> AsyncIterator[str]:
        """A short-lived reply queue (e.g. for one control broadcast): yields its name.

        Exclusive and server-named, on a channel of its own that is closed on exit, which
        deletes the queue: repeated broadcasts leave no channel or queue behind.
        """
        inbound = await self._inbound()
        doing = mapped("opening a reply queue")
        with doing:
            connection = await inbound.connection(self.options.publish_timeout)
            channel = await connection.channel()
        try:
            with doing:
                ok = await channel.rpc(commands.Queue.Declare(exclusive=True, auto_delete=True))
                await channel.consume(ok.queue, "", _replies_to(on_reply), prefetch=0, acks=False)
            yield ok.queue
        finally:
            await channel.close()

    async def get(self, queue_name: str) -> Delivery | None:
        """Fetch one message from a queue by its full name (basic.get), or None if empty.

        The delivery stays unacked until acked or rejected (used by the dead-letter tools), on
        a channel of its own: the consumers' coalesced acks must never cover it.
        """
        slot: ChannelSlot = self._require(self._getter, "get")

        async def attempt(timeout: float) -> Any:
            channel = await slot.get(timeout)
            return await channel.rpc(commands.Basic.Get(queue=queue_name))

        # A get repeated after a lost connection is safe: what the lost one fetched went back.
        with mapped(f"reading queue {queue_name!r}"):
            got = await self._patiently("basic.get", attempt)
        if not isinstance(got, Delivery):
            return None  # basic.get-empty
        got.queue = queue_name
        return got

    # -- control plane and events (see taskq.control, taskq.events) ----------------------------

    async def listen(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Like :meth:`consume_bound`, but ``on_delivery`` is called synchronously for each
        message (no task per message: for busy streams such as events). It must not block."""

        async def declare(channel: Channel) -> str | None:
            await channel.rpc(
                commands.Queue.Declare(
                    queue=queue_name, exclusive=True, auto_delete=True, arguments=arguments
                )
            )
            await channel.rpc(
                commands.Queue.Bind(queue=queue_name, exchange=exchange, routing_key=routing_key)
            )
            return None

        inbound = await self._inbound()
        with mapped(f"consuming queue {queue_name!r}"):
            await inbound.subscribe(queue_name, "", on_delivery, acks=False, prepare=declare)

    async def hold(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue with ``arguments`` and keep a consumer on it for as long as
        this transport lives (declared and consumed again after a reconnect). Nothing is
        published to it: the consumer only keeps an ``x-expires`` lease from running out while
        the process is alive (a worker's presence, see taskq.control)."""

        async def declare(channel: Channel) -> str | None:
            await channel.rpc(
                commands.Queue.Declare(queue=queue_name, durable=True, arguments=arguments)
            )
            return None

        inbound = await self._inbound()
        with mapped(f"holding queue {queue_name!r}"):
            self._held[queue_name] = await inbound.subscribe(
                queue_name, "", _ignore, acks=False, prepare=declare
            )

    async def declare_queue(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue by its full name with ``arguments`` (idempotent)."""
        with mapped(f"declaring queue {queue_name!r}"):
            await self._rpc(_queue_declare(queue_name, arguments))

    async def _declare_exclusive(self, queue_name: str) -> None:
        # On a channel of its own: a refusal closes the channel it was made on.
        slot: ChannelSlot = self._require(self._claimer, "claim")
        request = commands.Queue.Declare(queue=queue_name, exclusive=True)

        async def attempt(timeout: float) -> Any:
            channel = await slot.get(timeout)
            return await channel.rpc(request)

        with mapped(f"claiming queue {queue_name!r}"):
            await self._patiently("queue.declare", attempt)

    async def read_stream(
        self,
        queue_name: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any],
        prefetch: int,
    ) -> Callable[[], Awaitable[None]]:
        """Declare stream queue ``queue_name`` and read it from its first message with manual
        acks (a stream consumer needs basic.qos and acks; ``x-stream-offset`` is a consumer
        argument). After a reconnect it is read again from the start."""

        async def declare(channel: Channel) -> str | None:
            await channel.rpc(_queue_declare(queue_name, arguments))
            return None

        inbound = await self._inbound()
        with mapped(f"reading stream {queue_name!r}"):
            return await inbound.subscribe(
                queue_name, queue_name, on_delivery, prefetch=prefetch, prepare=declare,
                arguments={"x-stream-offset": "first"},
            )  # fmt: skip

    async def release(self, queue_name: str) -> None:
        """Stop holding ``queue_name`` (see :meth:`hold`) and delete it. The consumer goes
        first: a queue deleted under its consumer makes the broker cancel it, which reads as
        an error in the logs."""
        cancel = self._held.pop(queue_name, None)
        if cancel is not None:
            await cancel()
        await self.delete_queue(queue_name)


def _settle_on(delivered: asyncio.Future[None] | None, confirm: asyncio.Future[None]) -> None:
    """Settle ``confirm`` once ``delivered`` is resolved, if the broker did not first."""
    if delivered is not None:
        delivered.add_done_callback(partial(_confirmed_by_delivery, confirm))


def _confirmed_by_delivery(confirm: asyncio.Future[None], delivered: asyncio.Future[None]) -> None:
    if not confirm.done() and not delivered.cancelled():
        confirm.set_result(None)  # the broker's own confirm, when it comes, finds it settled


def _write(
    channel: Channel, item: tuple[str, str, OutgoingMessage]
) -> asyncio.Future[None] | EncodeError:
    """Write one publish of a batch: the future of its confirm, or the EncodeError of
    properties the broker would refuse (ChannelClosed if the channel is closed)."""
    exchange, key, message = item
    if message.message_id is None:  # a return is matched to its publish by it
        message = dataclasses.replace(message, message_id=uuid.uuid4().hex)
    if message.route_when_written is not None:
        exchange, key = message.route_when_written()
    try:
        confirm = channel.publish(exchange, key, message.body, properties(message), mandatory=True)
    except EncodeError as exc:
        return exc
    assert confirm is not None
    return confirm


async def _settle(
    items: Sequence[tuple[str, str, OutgoingMessage]],
    confirms: Sequence[tuple[int, asyncio.Future[None]]],
    results: list[BaseException | None],
) -> list[int]:
    """Await a batch's confirms, noting each failure in ``results``; return the positions of
    the messages whose channel closed first (they may have arrived: sent again as copies)."""
    resend = []
    for index, confirm in confirms:
        try:
            await confirm
        except ChannelClosed as exc:
            if is_refusal(exc):
                results[index] = broker_error(exc, _publishing(items[index]), PublishError)
            else:
                resend.append(index)
        except (Returned, Nacked) as exc:
            results[index] = broker_error(exc, _publishing(items[index]), PublishError)
    return resend


def _copy(item: tuple[str, str, OutgoingMessage]) -> tuple[str, str, OutgoingMessage]:
    exchange, key, message = item
    return exchange, key, message.resend() if message.resend is not None else message


def _publishing(item: tuple[str, str, OutgoingMessage]) -> str:
    exchange, routing_key, message = item
    return f"publishing message {message.message_id} to {exchange!r}/{routing_key!r}"


def _ignore(delivery: Delivery) -> None:
    """Deliveries to a held queue mean nothing (nobody publishes there)."""


def _work_queue_methods(names: topology.Names, route: str, arguments: dict[str, Any]) -> list[Any]:
    """Declare the work queue of ``route`` and bind it to the task and delivery exchanges."""
    work = names.work_queue(route)
    return [
        _queue_declare(work, arguments),
        commands.Queue.Bind(queue=work, exchange=names.exchange, routing_key=route),
    ] + [
        commands.Queue.Bind(queue=work, exchange=names.delivery, routing_key=key)
        for key in topology.delivery_bindings(route)
    ]


def _hold_queue_methods(names: topology.Names, route: str, arguments: dict[str, Any]) -> list[Any]:
    """Declare the hold queue of ``route`` and bind it to the delivery exchange (what leaves
    the delay levels for it; what is due soon is published to it by name)."""
    hold = names.hold_queue(route)
    binding = topology.hold_binding(route)
    return [
        _queue_declare(hold, arguments),
        commands.Queue.Bind(queue=hold, exchange=names.delivery, routing_key=binding),
    ]


def _exchange_declare(name: str, kind: str) -> commands.Exchange.Declare:
    return commands.Exchange.Declare(exchange=name, exchange_type=kind, durable=True)


def _queue_declare(name: str, arguments: dict[str, Any]) -> commands.Queue.Declare:
    return commands.Queue.Declare(queue=name, durable=True, arguments=arguments)


def _replies_to(on_reply: Reply) -> Callable[[Delivery], None]:
    def on_delivery(delivery: Delivery) -> None:
        on_reply(delivery.correlation_id, delivery.body, delivery.type)

    return on_delivery


async def _exists(channel: Channel, queue_name: str) -> bool:
    """Whether a queue exists, asked on a throwaway channel (a failed passive declare closes
    the channel it was made on)."""
    probe = await channel.connection.channel()
    try:
        await probe.rpc(commands.Queue.Declare(queue=queue_name, passive=True))
    except ChannelClosed as exc:
        if exc.code == NOT_FOUND:
            return False
        raise
    finally:
        await probe.close()
    return True
