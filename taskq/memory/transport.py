"""MemoryTransport: the Transport's methods over an in-process MemoryBroker.

What the App, the Worker, the AMQP result store, the control plane and the dead-letter tools
call on a Transport, with the same meaning and the same taskq.exceptions, so that the code
above it (sending, the worker loop, results, hooks) is the code that runs against RabbitMQ.
Publishes are "confirmed" when routed; nothing is ever unconfirmed or dropped for want of room.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import topology
from ..exceptions import BrokerError, ConfigurationError, LifecycleError
from ..message import OutgoingMessage
from ..transport import (
    Delivery,
    Lease,
    QueueDepth,
    Reply,
    SharedMethods,
    Transport,
    TransportOptions,
)
from .broker import NOT_FOUND, Consumer, Holder, MemoryBroker, Stream
from .loopscope import of_running_loop
from .url import MemoryUrl, parse_memory_url

if TYPE_CHECKING:
    from ..settings import Settings


def broker_for(url: MemoryUrl) -> MemoryBroker:
    """The MemoryBroker of ``url``'s name on the running event loop (made at first use)."""
    return of_running_loop("broker", url.name, lambda: MemoryBroker(url))


class MemoryTransport(SharedMethods, Transport):
    """A Transport whose broker is a MemoryBroker of the running event loop (``memory://``)."""

    holds_delays = False  # its delay exchanges hold a message for its whole delay

    def __init__(self, settings: Settings, *, connection_name: str = "taskq") -> None:
        # Not Transport.__init__: there is no endpoint to parse and no connection to keep.
        self.settings = settings
        self.options = TransportOptions(
            (), prefix=settings.prefix, publish_timeout=settings.publish_timeout,
            partitions=settings.partitions,
        )  # fmt: skip
        self.names = topology.Names(settings.prefix)
        self.url = parse_memory_url(settings.broker)
        super().__init__()
        self._connection_name = connection_name
        self._broker: MemoryBroker | None = None
        self._consumers: list[Consumer] = []
        self._getters: dict[str, Holder] = {}
        self._stream_cancels: list[Callable[[], Awaitable[None]]] = []

    def __repr__(self) -> str:
        return f"<MemoryTransport memory://{self.url.name} prefix={self.settings.prefix!r}>"

    @property
    def broker(self) -> MemoryBroker:
        """The broker; LifecycleError before ``connect`` or after ``close``."""
        if self._broker is None:
            raise LifecycleError("the transport is not connected (use `async with app:`)")
        return self._broker

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._broker is not None:
            raise LifecycleError("transport already connected")
        self._broker = broker_for(self.url)

    async def close(self) -> None:
        """Cancel this transport's consumers, give back what they hold unacked, delete its
        exclusive queues (as a closed connection does); idempotent."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        self.cancel_handlers()
        for cancel_reading in self._stream_cancels:
            await cancel_reading()
        for consumer in self._consumers:
            with contextlib.suppress(ValueError):
                consumer.queue.consumers.remove(consumer)
            consumer.return_all()
        for holder in self._getters.values():
            holder.return_all()
        for name in [n for n, q in broker.queues.items() if q.owner is self]:
            broker.delete_queue(name)

    @property
    def connected(self) -> bool:
        return self._broker is not None

    @property
    def buffered_bytes(self) -> int:
        return 0

    # -- topology ----------------------------------------------------------------------------

    async def declare_work_queue(self, queue: str, *, again: bool = False) -> None:
        broker, names = self.broker, self.names
        broker.declare_exchange(names.exchange, "direct")
        broker.declare_exchange(names.dlx, "direct")
        broker.declare_exchange(names.delivery, "topic")
        dead = names.dead_queue(queue)
        broker.declare_queue(dead)
        broker.bind(dead, names.dlx, queue)
        for route in topology.routes(queue, self.settings.partitions_of(queue)):
            work = names.work_queue(route)
            broker.declare_queue(work, dead_letter=(names.dlx, queue))
            broker.bind(work, names.exchange, route)
            for key in topology.delivery_bindings(route):
                broker.bind(work, names.delivery, key)

    async def declare_delay_path(self, delay_ms: int) -> None:
        broker, names = self.broker, self.names
        broker.declare_exchange(names.delivery, "topic")
        for name in topology.DELAY.exchange_names(names):
            broker.declare_exchange(name, "topic").delay_to = names.delivery

    async def declare_exchange(self, name: str, kind: str) -> None:
        self.broker.declare_exchange(name, kind)

    async def queue_depth(self, queue_name: str) -> QueueDepth | None:
        queue = self.broker.queues.get(queue_name)
        if queue is None:
            return None
        return QueueDepth(queue_name, len(queue), len(queue.consumers))

    async def argument_refusal(self, queue_name: str, arguments: dict[str, Any]) -> str | None:
        return None  # queue arguments are not kept: nothing to disagree with

    async def server_properties(self) -> dict[str, Any]:
        return {"product": "taskq memory broker", "version": "0"}

    async def purge(self, queue_name: str) -> int:
        queue = self.broker.queues.get(queue_name)
        if queue is None:
            raise BrokerError(f"no queue named {queue_name!r}", reply_code=NOT_FOUND)
        return queue.purge()

    def beat_lease(self, holder: str) -> Lease:
        raise ConfigurationError(
            "the periodic scheduler needs RabbitMQ: memory:// has no single-active-consumer lease"
        )

    async def delete_queue(self, queue_name: str) -> None:
        self.broker.delete_queue(queue_name)

    async def delete_exchange(self, name: str) -> None:
        self.broker.exchanges.pop(name, None)

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
        self.broker.publish(exchange, routing_key, message, mandatory=mandatory)

    async def notify(self, routing_key: str, message: OutgoingMessage) -> None:
        self.broker.publish("", routing_key, message, mandatory=False)

    async def emit(self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]) -> int:
        for routing_key, message in messages:
            self.broker.publish(exchange, routing_key, message, mandatory=False)
        return 0

    # -- consuming ---------------------------------------------------------------------------

    def _subscribe(
        self,
        queue_name: str,
        label: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int = 0,
        acks: bool = True,
    ) -> Callable[[], Awaitable[None]]:
        consumer = self.broker.subscribe(
            queue_name, self, label, on_delivery, prefetch=prefetch, acks=acks
        )
        self._consumers.append(consumer)

        async def cancel() -> None:
            with contextlib.suppress(ValueError):
                consumer.queue.consumers.remove(consumer)

        return cancel

    async def consume(
        self,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int,
        held: bool = False,
    ) -> Callable[[], Awaitable[None]]:
        if held:  # nothing is ever published to a hold queue here (holds_delays is False)
            return _nothing_to_cancel
        return self._subscribe(self.names.work_queue(queue), queue, on_delivery, prefetch=prefetch)

    async def consume_replies(
        self, queue_name: str, on_reply: Reply, *, expires: float, on_lost: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]]:
        self.broker.declare_queue(queue_name)  # nothing expires: on_lost is never called
        return self._subscribe(queue_name, "", _replies_to(on_reply), acks=False)

    @contextlib.asynccontextmanager
    async def reply_inbox(self, on_reply: Reply) -> AsyncIterator[str]:
        name = f"amq.gen-{uuid.uuid4().hex}"
        self.broker.declare_queue(name, owner=self)
        cancel = self._subscribe(name, "", _replies_to(on_reply), acks=False)
        try:
            yield name
        finally:
            await cancel()
            self.broker.delete_queue(name)

    async def get(self, queue_name: str) -> Delivery | None:
        queue = self.broker.queues.get(queue_name)
        if queue is None:
            raise BrokerError(f"no queue named {queue_name!r}", reply_code=NOT_FOUND)
        holder = self._getters.get(queue_name)
        if holder is None or holder.queue is not queue:
            holder = self._getters[queue_name] = Holder(self.broker, queue, self)
        return self.broker.get(queue, holder)

    async def listen(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        broker = self.broker
        broker.declare_queue(queue_name, owner=self)
        broker.declare_exchange(exchange, "topic")
        broker.bind(queue_name, exchange, routing_key)
        self._subscribe(queue_name, "", on_delivery, acks=False)

    async def hold(self, queue_name: str, arguments: dict[str, Any]) -> None:
        self.broker.declare_queue(queue_name)
        self._subscribe(queue_name, "", _ignore, acks=False)

    async def release(self, queue_name: str) -> None:
        self.broker.delete_queue(queue_name)

    async def declare_queue(self, queue_name: str, arguments: dict[str, Any]) -> None:
        if arguments.get("x-queue-type") == "stream":
            self.broker.streams.setdefault(queue_name, Stream(queue_name))
        else:
            self.broker.declare_queue(queue_name)

    async def _declare_exclusive(self, queue_name: str) -> None:
        self.broker.declare_queue(queue_name, owner=self)

    async def read_stream(
        self,
        queue_name: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any],
        prefetch: int,
    ) -> Callable[[], Awaitable[None]]:
        stream = self.broker.streams.setdefault(queue_name, Stream(queue_name))
        for message in list(stream.log):
            on_delivery(stream.delivery(message))
        stream.readers.append(on_delivery)

        async def cancel() -> None:
            with contextlib.suppress(ValueError):
                stream.readers.remove(on_delivery)

        self._stream_cancels.append(cancel)
        return cancel


def _ignore(delivery: Delivery) -> None:
    """Deliveries to a held queue mean nothing (nobody publishes there)."""


def _replies_to(on_reply: Reply) -> Callable[[Delivery], None]:
    def on_delivery(delivery: Delivery) -> None:
        on_reply(delivery.correlation_id, delivery.body, delivery.type)

    return on_delivery


async def _nothing_to_cancel() -> None:
    return None
