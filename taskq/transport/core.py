"""The one seam to RabbitMQ: the only module that imports aio-pika.

Two robust connections: one publishes (publisher confirms, mandatory publishes whose returns
raise), one consumes. A blocked publisher (RabbitMQ's memory alarm blocks publishing
connections) then never stalls the acks of the consumer. Robust connections reconnect and
re-declare the queues and consumers of their channels; a publish that fails because the
connection dropped is retried after the reconnect, up to ``publish_timeout`` (so it may be
duplicated, never lost: at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection, ExchangeType
from aiormq.abc import DeliveredMessage

from .. import topology
from ..exceptions import BrokerUnavailable, LifecycleError, PublishError, TopologyMismatch
from ..message import OutgoingMessage
from ..redact import redact_url
from ..settings import Settings
from .wire import Delivery, acker_of, properties

log = logging.getLogger("taskq.transport")

# What a dropped or reconnecting connection raises. Not RuntimeError in general: a bug must
# fail at once, not be retried for publish_timeout.
_CONNECTION_ERRORS = (
    ConnectionError,  # aiormq.exceptions.AMQPConnectionError is one
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    asyncio.TimeoutError,
)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueDepth:
    """Ready messages and consumers of one queue, from a passive declare."""

    name: str
    messages: int
    consumers: int


class Transport:
    """Connections, channels, topology and publishing for one App (client or worker)."""

    def __init__(self, settings: Settings, *, connection_name: str = "taskq") -> None:
        self.settings = settings
        self.names = topology.Names(settings.prefix)
        self._connection_name = connection_name
        self._publisher: AbstractRobustConnection | None = None
        self._consumer: AbstractRobustConnection | None = None
        self._confirm_channel: AbstractRobustChannel | None = None
        self._notify_channel: AbstractRobustChannel | None = None
        self._topology_channel: AbstractRobustChannel | None = None
        self._get_channel: AbstractRobustChannel | None = None
        self._confirm_underlay: aiormq.abc.AbstractChannel | None = None
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<Transport {redact_url(self.settings.broker)} prefix={self.settings.prefix!r}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def _connect_one(self, role: str) -> AbstractRobustConnection:
        try:
            return await aio_pika.connect_robust(
                self.settings.broker,
                timeout=self.settings.connect_timeout,
                client_properties={"connection_name": f"{self._connection_name}:{role}"},
                reconnect_interval=1,
            )
        except Exception as exc:
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {redact_url(self.settings.broker)}: "
                f"{redact_url(str(exc))}"
            ) from exc

    async def connect(self) -> None:
        """Open both connections and the channels; raise BrokerUnavailable if the broker is down."""
        if self._publisher is not None:
            raise LifecycleError("transport already connected")
        self._publisher = await self._connect_one("publish")
        try:
            self._consumer = await self._connect_one("consume")
            self._confirm_channel = await self._publisher.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._notify_channel = await self._publisher.channel(publisher_confirms=False)
            self._topology_channel = await self._publisher.channel()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close both connections (idempotent)."""
        for conn in (self._consumer, self._publisher):
            if conn is not None and not conn.is_closed:
                try:
                    await conn.close()
                except Exception:  # closing a broken connection: nothing more to do
                    log.debug("error while closing a connection", exc_info=True)
        self._consumer = self._publisher = None

    @property
    def connected(self) -> bool:
        """Whether both connections are currently up."""
        return all(
            c is not None and not c.is_closed and c.connected.is_set()
            for c in (self._publisher, self._consumer)
        )

    def _require(self, value: Any, what: str) -> Any:
        if value is None:
            raise LifecycleError(f"{what}: the transport is not connected (use `async with app:`)")
        return value

    # -- topology ----------------------------------------------------------------------------

    async def _declare(self, action: Callable[[AbstractRobustChannel], Awaitable[Any]]) -> Any:
        channel: AbstractRobustChannel = self._require(self._topology_channel, "declare")
        try:
            return await action(channel)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await self._reopen_topology_channel()
            raise TopologyMismatch(
                f"an existing exchange or queue has other arguments than taskq declares: {exc}. "
                "Delete it (rabbitmqctl delete_queue NAME) or use another prefix."
            ) from exc

    async def _reopen_topology_channel(self) -> None:
        old = self._topology_channel
        publisher = self._require(self._publisher, "declare")
        self._topology_channel = await publisher.channel()
        if old is not None:
            try:
                await old.close()
            except Exception:
                log.debug("closing a failed topology channel", exc_info=True)

    async def _declare_exchange(
        self, ch: AbstractRobustChannel, name: str, kind: ExchangeType
    ) -> Any:
        return await ch.declare_exchange(name, kind, durable=True)

    async def declare_work_queue(self, queue: str) -> None:
        """Declare (idempotently) everything a work queue needs: its exchange, dead-letter
        exchange and ``.dead`` queue, and its binding from the delay levels' delivery exchange."""
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue in self._declared:
                return
            await self._declare(lambda ch: self._declare_queue_set(ch, queue))
            self._declared.add(queue)

    async def _declare_queue_set(self, ch: AbstractRobustChannel, queue: str) -> None:
        names, s = self.names, self.settings
        exchange = await self._declare_exchange(ch, names.exchange, ExchangeType.DIRECT)
        dlx = await self._declare_exchange(ch, names.dlx, ExchangeType.DIRECT)
        delivery = await self._declare_exchange(ch, names.delivery, ExchangeType.TOPIC)
        work = await ch.declare_queue(
            names.work_queue(queue),
            durable=True,
            arguments=topology.work_queue_arguments(
                names, queue, max_priority=s.max_priority, queue_type=s.queue_type_of(queue)
            ),
        )
        dead = await ch.declare_queue(
            names.dead_queue(queue), durable=True, arguments=topology.dead_queue_arguments()
        )
        await work.bind(exchange, routing_key=queue)
        await work.bind(delivery, routing_key=topology.delivery_binding(queue))
        await dead.bind(dlx, routing_key=queue)

    async def declare_delay_levels(self) -> None:
        """Declare the delay level exchanges, queues and bindings (idempotent)."""
        if "::delay" in self._declared:
            return
        async with self._declare_lock:
            if "::delay" in self._declared:
                return
            await self._declare(self._declare_levels)
            self._declared.add("::delay")

    async def _declare_levels(self, ch: AbstractRobustChannel) -> None:
        names = self.names
        quorum = self.settings.any_quorum
        below = await self._declare_exchange(ch, names.delivery, ExchangeType.TOPIC)
        for level in range(topology.DELAY_LEVELS):
            exchange = await self._declare_exchange(
                ch, names.delay_level(level), ExchangeType.TOPIC
            )
            queue = await ch.declare_queue(
                names.delay_level(level),
                durable=True,
                arguments=topology.delay_level_arguments(names, level, quorum=quorum),
            )
            (_, into_queue), (_, onward) = topology.delay_level_bindings(names, level)
            await queue.bind(exchange, routing_key=into_queue)
            await below.bind(exchange, routing_key=onward)
            below = exchange

    async def declare_exchange(self, name: str, kind: str) -> None:
        """Declare one durable exchange of ``kind`` ('direct', 'topic' or 'fanout')."""
        await self._declare(lambda ch: self._declare_exchange(ch, name, ExchangeType(kind)))

    async def queue_depth(self, queue_name: str) -> QueueDepth | None:
        """Ready messages and consumers of a queue (full name), or None if it does not exist."""
        publisher = self._require(self._publisher, "queue_depth")
        channel = await publisher.channel()
        try:
            declared = await channel.declare_queue(queue_name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        finally:
            if not channel.is_closed:
                await channel.close()
        result = declared.declaration_result
        return QueueDepth(queue_name, result.message_count or 0, result.consumer_count or 0)

    async def purge(self, queue_name: str) -> int:
        """Remove every ready message from a queue by its full name; return how many."""
        channel: AbstractRobustChannel = self._require(self._topology_channel, "purge")
        queue = await channel.declare_queue(queue_name, passive=True)
        result = await queue.purge()
        return int(result.message_count or 0)

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool = True
    ) -> None:
        """Publish and wait for the broker's confirm. An unroutable or nacked publish raises
        PublishError; a dropped connection is waited out and the publish retried until
        ``publish_timeout``, then BrokerUnavailable."""
        channel: AbstractRobustChannel = self._require(self._confirm_channel, "publish")
        props = properties(message)
        deadline = 0.0
        while True:
            try:
                underlay = self._confirm_underlay
                if underlay is None or underlay.is_closed:
                    underlay = self._confirm_underlay = await channel.get_underlay_channel()
                # wait=False: release aiormq's channel lock once the frame is queued rather
                # than when it is written, so concurrent publishes pipeline; the confirm is
                # still awaited. No per-publish timer: a dead connection is found by AMQP
                # heartbeats, which fail the pending confirms, and the publish is retried.
                await underlay.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=props,
                    mandatory=mandatory,
                    wait=False,  # type: ignore[call-arg]  # aiormq's Channel has it
                )
                return
            except aiormq.exceptions.DeliveryError as exc:
                raise PublishError(
                    f"broker refused message {message.message_id} to "
                    f"{exchange!r}/{routing_key!r}: {_describe_refusal(exc)}"
                ) from exc
            except (
                aiormq.exceptions.ChannelNotFoundEntity,
                aiormq.exceptions.ChannelAccessRefused,
            ) as exc:
                # A missing exchange closes the channel: retrying would only repeat it (and
                # republish the batch's other messages on every reopen).
                self._confirm_underlay = None
                raise PublishError(
                    f"broker refused message {message.message_id} to "
                    f"{exchange!r}/{routing_key!r}: {exc}"
                ) from exc
            except _CONNECTION_ERRORS as exc:
                self._confirm_underlay = None
                deadline = deadline or time.monotonic() + self.settings.publish_timeout
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailable(
                        f"publish failed and the broker did not come back: {exc}"
                    ) from exc
                log.warning("publish interrupted (%r); retrying after reconnect", exc)
                await _wait_ready(channel, remaining)

    async def publish_many(self, items: Sequence[tuple[str, str, OutgoingMessage]]) -> None:
        """Publish ``(exchange, routing_key, message)`` items with pipelined confirms.

        Everything is published first, then every confirm awaited (aiormq pipelines confirms on
        one channel), so a batch costs about one round trip instead of one per message. All or
        error: if any publish fails, the others still finish, then PublishError names the
        message IDs that were not confirmed (the rest were; resend only the ones named).
        """
        results = await asyncio.gather(
            *(self.publish(exchange, key, message) for exchange, key, message in items),
            return_exceptions=True,
        )
        failed = [
            (message.message_id, result)
            for (_, _, message), result in zip(items, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            ids = ", ".join(str(message_id) for message_id, _ in failed)
            raise PublishError(
                f"{len(failed)} of {len(items)} messages not confirmed: {ids} "
                f"(first error: {failed[0][1]})"
            ) from failed[0][1]

    async def notify(self, routing_key: str, message: OutgoingMessage) -> None:
        """Publish a transient, unconfirmed, non-mandatory message on the default exchange
        (status updates to a reply queue). Replies to a queue that is gone are dropped by design."""
        await self._unconfirmed("", [(routing_key, message)])

    async def _unconfirmed(
        self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]
    ) -> None:
        channel: AbstractRobustChannel = self._require(self._notify_channel, "notify")
        try:
            underlay = await channel.get_underlay_channel()
            for routing_key, message in messages:
                await underlay.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties(message),
                    mandatory=False,
                    wait=False,  # type: ignore[call-arg]  # aiormq's Channel has it
                )
        except _CONNECTION_ERRORS as exc:
            log.warning("%d unconfirmed message(s) not sent: %r", len(messages), exc)

    # -- consuming ---------------------------------------------------------------------------

    async def _consume_raw(
        self,
        channel: AbstractRobustChannel,
        queue_name: str,
        on_message: Callable[[DeliveredMessage], Any],
        *,
        no_ack: bool,
        prepare: Callable[[aiormq.abc.AbstractChannel], Awaitable[None]] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """basic.consume on the channel's aiormq channel, again after every reopen (aio-pika
        restores only the consumers it created itself), each time after ``prepare`` (e.g. a
        declare); return a cancel function."""
        current: dict[str, Any] = {}

        async def start(*_: Any) -> None:
            underlay = await channel.get_underlay_channel()
            if prepare is not None:
                await prepare(underlay)
            ok = await underlay.basic_consume(queue_name, on_message, no_ack=no_ack)
            current["underlay"], current["tag"] = underlay, ok.consumer_tag

        await start()
        channel.reopen_callbacks.add(start)

        async def cancel() -> None:
            channel.reopen_callbacks.discard(start)
            try:
                await current["underlay"].basic_cancel(current["tag"])
            except _CONNECTION_ERRORS:
                log.debug("cancel of consumer %s failed: connection gone", current["tag"])

        return cancel

    async def consume(
        self, queue: str, on_delivery: Callable[[Delivery], None], *, prefetch: int
    ) -> Callable[[], Awaitable[None]]:
        """Consume work queue ``queue`` (short name) with manual acks; return a cancel function.

        Each work queue gets a channel of its own with ``prefetch`` as its limit, so a worker on
        k queues holds at most k x prefetch unacked deliveries (per-consumer QoS: RabbitMQ 4.3
        refuses the global flag, and quorum queues never supported it). Acks are coalesced per
        channel (wire.acker_of), never per queue.

        ``on_delivery`` is called synchronously and must not block: it hands the delivery to
        its owner. aiormq cancels callbacks still running when their channel closes, so no
        task runs inside the callback.
        """
        consumer = self._require(self._consumer, "consume")
        channel = await consumer.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue_name = self.names.work_queue(queue)
        await channel.declare_queue(queue_name, passive=True)

        def callback(message: DeliveredMessage) -> None:
            on_delivery(Delivery(message, queue, acker_of(message.channel)))

        # The channel stays open after a cancel: running tasks still ack on it.
        return await self._consume_raw(channel, queue_name, callback, no_ack=False)

    async def consume_replies(
        self,
        queue_name: str,
        on_reply: Callable[[str | None, bytes, str | None], None],
        *,
        expires: float,
        on_lost: Callable[[], None],
    ) -> None:
        """Declare a reply queue that outlives a reconnect, and consume it without acks.

        The queue is durable and not exclusive, so replies published while this client
        reconnects wait in it; ``x-expires`` removes it once nobody has used it for
        ``expires`` seconds (a client that died). After a reconnect the queue is checked
        before it is declared again: if it expired meanwhile, replies sent to it were dropped
        by the broker, and ``on_lost`` is called so that waiters learn it at once.
        """
        consumer = self._require(self._consumer, "consume_replies")
        channel = await consumer.channel()
        arguments = topology.reply_queue_arguments(expires)
        reconnected = False

        async def declare(underlay: aiormq.abc.AbstractChannel) -> None:
            nonlocal reconnected
            if reconnected and not await _exists(underlay.connection, queue_name):
                on_lost()
            reconnected = True
            await underlay.queue_declare(queue_name, durable=True, arguments=arguments)

        def callback(message: DeliveredMessage) -> None:
            props = message.header.properties
            on_reply(props.correlation_id, message.body, props.message_type)

        await self._consume_raw(channel, queue_name, callback, no_ack=True, prepare=declare)

    @contextlib.asynccontextmanager
    async def reply_inbox(
        self, on_reply: Callable[[str | None, bytes, str | None], None]
    ) -> AsyncIterator[str]:
        """A short-lived reply queue (e.g. for one control broadcast): yields its name.

        Exclusive and server-named, on a channel of its own that is closed on exit, which
        deletes the queue: repeated broadcasts leave no channel or queue behind.
        """
        consumer = self._require(self._consumer, "reply_inbox")
        channel = await consumer.channel()
        try:
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare("", exclusive=True, auto_delete=True)
            name = declared.queue or ""

            def callback(message: DeliveredMessage) -> None:
                props = message.header.properties
                on_reply(props.correlation_id, message.body, props.message_type)

            await underlay.basic_consume(name, callback, no_ack=True)
            yield name
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await channel.close()

    async def delete_queue(self, queue_name: str) -> None:
        """Delete a queue by its full name (nothing happens if it does not exist)."""
        channel: AbstractRobustChannel = self._require(self._topology_channel, "delete_queue")
        underlay = await channel.get_underlay_channel()
        await underlay.queue_delete(queue_name)

    async def get(self, queue_name: str) -> Delivery | None:
        """Fetch one message from a queue by its full name (basic.get), or None if empty.

        The delivery stays unacked until acked or rejected (used by the dead-letter tools), on
        a channel of its own: the consumers' coalesced acks must never cover it.
        """
        if self._get_channel is None:
            consumer = self._require(self._consumer, "get")
            self._get_channel = await consumer.channel()
        queue = await self._get_channel.declare_queue(queue_name, passive=True)
        underlay = await self._get_channel.get_underlay_channel()
        message = await underlay.basic_get(queue.name, no_ack=False)
        if not isinstance(message.delivery, aiormq.spec.Basic.GetOk):
            return None
        return Delivery(message, queue_name, None)

    # -- control plane and events (see taskq.control, taskq.events) ----------------------------

    async def consume_bound(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_message: Callable[[str | None, bytes], Awaitable[None]],
    ) -> None:
        """Declare an exclusive queue bound to ``exchange`` with ``routing_key`` and consume it
        without acks, calling ``on_message(type, body)``. The queue goes with the connection;
        a robust reconnect re-declares it and its binding."""
        consumer = self._require(self._consumer, "consume_bound")
        channel = await consumer.channel()
        queue = await channel.declare_queue(queue_name, exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)

        async def callback(message: DeliveredMessage) -> None:
            await on_message(message.header.properties.message_type, message.body)

        await self._consume_raw(channel, queue_name, callback, no_ack=True)

    async def emit(self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]) -> None:
        """Publish ``(routing_key, message)`` items unconfirmed and non-mandatory to
        ``exchange`` (events: telemetry that may be dropped, never waited for). Lost while the
        connection is down, with a warning."""
        await self._unconfirmed(exchange, messages)


async def _exists(connection: aiormq.abc.AbstractConnection, queue_name: str) -> bool:
    """Whether a queue exists, asked on a throwaway channel (a failed passive declare closes
    the channel it was made on)."""
    probe = await connection.channel(publisher_confirms=False)
    try:
        await probe.queue_declare(queue_name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not probe.is_closed:
            await probe.close()
    return True


async def _wait_ready(channel: AbstractRobustChannel, timeout: float) -> None:
    try:
        await asyncio.wait_for(channel.ready(), timeout=min(timeout, 5.0))
    except (TimeoutError, Exception):
        await asyncio.sleep(0.2)


def _describe_refusal(exc: aiormq.exceptions.DeliveryError) -> str:
    delivery = getattr(exc.message, "delivery", None)
    if delivery is not None and hasattr(delivery, "reply_text"):
        return f"returned: {delivery.reply_code} {delivery.reply_text} (no queue bound for it)"
    return f"nacked by the broker ({type(exc.frame).__name__})"
