"""An in-process broker: the exchanges, queues and bindings taskq declares, in memory.

It routes as RabbitMQ does for what taskq uses: direct, topic and fanout exchanges, the
default exchange (a queue by its name), mandatory publishes that raise when nothing is
bound, priority queues (higher first, FIFO within one priority), per-consumer prefetch,
acks, rejects with requeue (back at the old position, marked redelivered) and without (to the
work queue's dead-letter exchange), exclusive queues that go with their owner, and unacked
deliveries that return to their queue when their owner closes.

The delay levels are one step instead of 36: a message published to any delay exchange is
held for the delay written in its routing key (on the event loop's clock, or not at all with
``instant_delays``), then routed through ``{prefix}.delivery`` as level 0 would.

Not simulated: persistence (everything lives as long as the event loop), message TTL and
``expires`` at the broker (the worker still refuses an expired task), ``x-death`` headers,
length limits, memory alarms, connection loss, quorum queue semantics. A transport that
closes gives its unacked deliveries back (as a dropped connection would).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Any

from .. import topology
from ..exceptions import BrokerError, PublishError
from ..message import OutgoingMessage
from ..transport import Delivery, properties
from .url import MemoryUrl

log = logging.getLogger("taskq.memory")

NOT_FOUND = 404
RESOURCE_LOCKED = 405


@dataclasses.dataclass(slots=True)
class Message:
    """One message held by the broker."""

    seq: int
    routing_key: str
    body: bytes
    props: dict[str, Any]
    redelivered: bool = False

    @property
    def priority(self) -> int:
        return int(self.props.get("priority") or 0)

    def peek(self, queue: str) -> Delivery:
        """This message as a Delivery that cannot be acked (to describe it in place)."""
        return Delivery(
            self.body, self.props, 0, self.redelivered, self.routing_key, queue, None, None
        )


class Holder:
    """Who holds unacked deliveries of a queue (a consumer, or a basic.get): the channel
    object of the Deliveries it gets (``basic_ack``, ``basic_reject``)."""

    def __init__(self, broker: MemoryBroker, queue: Queue, owner: object) -> None:
        self.broker = broker
        self.queue = queue
        self.owner = owner
        self.unacked: dict[int, Message] = {}

    def deliver(self, message: Message, label: str, tag: int) -> Delivery:
        """A Delivery of ``message`` held here until acked or rejected."""
        self.unacked[tag] = message
        return Delivery(
            message.body,
            message.props,
            tag,
            message.redelivered,
            message.routing_key,
            label,
            self,
            None,
        )

    async def basic_ack(self, tag: int) -> None:
        self.unacked.pop(tag, None)
        self.broker.dispatch_soon(self.queue)

    async def basic_reject(self, tag: int, *, requeue: bool) -> None:
        message = self.unacked.pop(tag, None)
        if message is not None:
            self.broker.give_back(self.queue, message, requeue=requeue)

    def return_all(self) -> None:
        """Return every unacked delivery to its queue (its owner closed)."""
        for message in self.unacked.values():
            self.broker.give_back(self.queue, message, requeue=True)
        self.unacked.clear()


class Consumer(Holder):
    """A consumer of one queue: ``on_delivery`` is called for each message, up to
    ``prefetch`` unacked at once (0: no limit); without ``acks`` a message is done once
    delivered."""

    def __init__(
        self,
        broker: MemoryBroker,
        queue: Queue,
        owner: object,
        label: str,
        on_delivery: Callable[[Delivery], None],
        prefetch: int,
        acks: bool,
    ) -> None:
        super().__init__(broker, queue, owner)
        self.label = label
        self.on_delivery = on_delivery
        self.prefetch = prefetch
        self.acks = acks

    @property
    def has_room(self) -> bool:
        return not self.prefetch or len(self.unacked) < self.prefetch


class Queue:
    """A queue: messages by priority, then arrival; its consumers; its dead-letter target."""

    def __init__(
        self, name: str, *, owner: object = None, dead_letter: tuple[str, str] | None = None
    ) -> None:
        self.name = name
        self.owner = owner
        """The transport of an exclusive queue (None: any may use it)."""
        self.dead_letter = dead_letter
        """``(exchange, routing key)`` a message rejected without requeue goes to."""
        self._heap: list[tuple[int, int, Message]] = []
        self.consumers: list[Consumer] = []
        self._turn = 0

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, message: Message) -> None:
        heapq.heappush(self._heap, (-message.priority, message.seq, message))

    def pop(self) -> Message | None:
        return heapq.heappop(self._heap)[2] if self._heap else None

    def messages(self) -> list[Message]:
        """The ready messages, in the order they would be delivered."""
        return [entry[2] for entry in sorted(self._heap)]

    def purge(self) -> int:
        count = len(self._heap)
        self._heap.clear()
        return count

    def next_consumer(self) -> Consumer | None:
        """The next consumer with room, round robin."""
        for _ in range(len(self.consumers)):
            self._turn = (self._turn + 1) % len(self.consumers)
            consumer = self.consumers[self._turn]
            if consumer.has_room:
                return consumer
        return None


@dataclasses.dataclass(slots=True)
class Exchange:
    """An exchange: its kind and its bindings ``(pattern, destination queue)``."""

    kind: str
    bindings: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    delay_to: str | None = None
    """For a delay level: the exchange a message goes to once its delay has passed."""

    def routes(self, routing_key: str) -> list[str]:
        """The queues a message with ``routing_key`` goes to."""
        if self.kind == "fanout":
            return [queue for _, queue in self.bindings]
        if self.kind == "topic":
            words = routing_key.split(".")
            return [
                queue
                for pattern, queue in self.bindings
                if topic_matches(pattern.split("."), words)
            ]
        return [queue for pattern, queue in self.bindings if pattern == routing_key]


def topic_matches(pattern: list[str], words: list[str]) -> bool:
    """Whether topic binding ``pattern`` (words, ``*`` one word, ``#`` zero or more)
    matches routing key ``words``."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and topic_matches(rest, words[1:])


def delay_of(routing_key: str) -> float:
    """Seconds of delay written in a delay routing key's digit words."""
    return topology.DELAY.delay_of_key(routing_key) / 1000


class _Acked:
    """The channel of a stream's deliveries: a stream keeps its messages, acks change nothing."""

    async def basic_ack(self, tag: int) -> None:
        """Nothing to forget."""

    async def basic_reject(self, tag: int, *, requeue: bool) -> None:
        """Nothing to give back."""


@dataclasses.dataclass(slots=True)
class Stream:
    """A stream queue: its messages stay, in order, and every reader reads them all."""

    name: str
    log: list[Message] = dataclasses.field(default_factory=list)
    readers: list[Callable[[Delivery], None]] = dataclasses.field(default_factory=list)

    def delivery(self, message: Message) -> Delivery:
        """``message`` as a Delivery whose ack does nothing."""
        return Delivery(
            message.body, message.props, message.seq, False, message.routing_key, self.name,
            _Acked(), None,
        )  # fmt: skip

    def append(self, message: Message) -> None:
        """Keep ``message`` and hand it to every reader."""
        self.log.append(message)
        for reader in list(self.readers):
            reader(self.delivery(message))


class MemoryBroker:
    """The exchanges and queues of one ``memory://`` URL on the running event loop."""

    def __init__(self, url: MemoryUrl) -> None:
        self.url = url
        self.queues: dict[str, Queue] = {}
        self.exchanges: dict[str, Exchange] = {}
        self.streams: dict[str, Stream] = {}
        self.delayed = 0
        """Messages waiting out a delay now."""
        self._seq = itertools.count()
        self._tags = itertools.count(1)
        self._dispatching: set[str] = set()

    def __repr__(self) -> str:
        return f"<MemoryBroker memory://{self.url.name} queues={len(self.queues)}>"

    # -- topology ------------------------------------------------------------------------

    def declare_exchange(self, name: str, kind: str) -> Exchange:
        return self.exchanges.setdefault(name, Exchange(kind))

    def declare_queue(
        self, name: str, *, owner: object = None, dead_letter: tuple[str, str] | None = None
    ) -> Queue:
        """The queue ``name``, made if new; BrokerError (405) if it is exclusive to another."""
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name, owner=owner, dead_letter=dead_letter)
        elif queue.owner is not None and queue.owner is not owner:
            raise BrokerError(
                f"queue {name!r} is exclusive to another connection", reply_code=RESOURCE_LOCKED
            )
        return queue

    def bind(self, queue: str, exchange: str, pattern: str) -> None:
        bindings = self.exchanges[exchange].bindings
        if (pattern, queue) not in bindings:
            bindings.append((pattern, queue))

    def delete_queue(self, name: str) -> None:
        queue = self.queues.pop(name, None)
        if queue is not None:
            queue.consumers.clear()
            for exchange in self.exchanges.values():
                exchange.bindings[:] = [b for b in exchange.bindings if b[1] != name]

    # -- publishing ----------------------------------------------------------------------

    def publish(
        self, exchange: str, routing_key: str, message: OutgoingMessage, *, mandatory: bool
    ) -> None:
        """Route ``message`` now (a delay exchange holds it first). PublishError if the
        exchange does not exist, or if ``mandatory`` and no queue is bound for it."""
        held = Message(next(self._seq), routing_key, message.body, properties(message))
        stream = self.streams.get(routing_key) if exchange == "" else None
        if stream is not None:
            stream.append(held)
            return
        self.route(exchange, held, mandatory=mandatory)

    def route(self, exchange: str, message: Message, *, mandatory: bool) -> None:
        target = self._targets(exchange, message.routing_key)
        if isinstance(target, float):
            self._hold(exchange, message, target)
            return
        if not target and mandatory:
            raise PublishError(
                f"message {message.props.get('message_id')} to {exchange!r}/"
                f"{message.routing_key!r} is unroutable: no queue is bound for it",
                unroutable=True,
                reply_code=312,
            )
        for name in target:
            copy = dataclasses.replace(message, props=dict(message.props))
            self.queues[name].put(copy)
            self.dispatch_soon(self.queues[name])

    def _targets(self, exchange: str, routing_key: str) -> list[str] | float:
        """The queues of a publish, or its delay in seconds for a delay exchange."""
        if exchange == "":
            return [routing_key] if routing_key in self.queues else []
        found = self.exchanges.get(exchange)
        if found is None:
            raise PublishError(f"no exchange {exchange!r}", reply_code=NOT_FOUND)
        if found.delay_to is not None:
            return 0.0 if self.url.instant_delays else delay_of(routing_key)
        return [name for name in found.routes(routing_key) if name in self.queues]

    def _hold(self, exchange: str, message: Message, delay: float) -> None:
        onward = self.exchanges[exchange].delay_to
        assert onward is not None

        def release() -> None:
            self.delayed -= 1
            # A delayed message is not mandatory any more (as dead-lettering from level 0).
            self.route(onward, message, mandatory=False)

        self.delayed += 1
        asyncio.get_running_loop().call_later(delay, release)

    def give_back(self, queue: Queue, message: Message, *, requeue: bool) -> None:
        """A rejected or returned delivery: back in its queue (redelivered), or to the
        queue's dead-letter exchange."""
        if requeue:
            if self.queues.get(queue.name) is queue:
                message.redelivered = True
                queue.put(message)
                self.dispatch_soon(queue)
        elif queue.dead_letter is not None:
            exchange, key = queue.dead_letter
            self.route(exchange, dataclasses.replace(message, routing_key=key), mandatory=False)

    # -- consuming -----------------------------------------------------------------------

    def subscribe(
        self,
        queue_name: str,
        owner: object,
        label: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int = 0,
        acks: bool = True,
    ) -> Consumer:
        queue = self.queues.get(queue_name)
        if queue is None:
            raise BrokerError(f"no queue {queue_name!r}", reply_code=NOT_FOUND)
        consumer = Consumer(self, queue, owner, label, on_delivery, prefetch, acks)
        queue.consumers.append(consumer)
        self.dispatch_soon(queue)
        return consumer

    def get(self, queue: Queue, holder: Holder) -> Delivery | None:
        """basic.get: the next message of ``queue``, held by ``holder``, or None."""
        message = queue.pop()
        return None if message is None else holder.deliver(message, queue.name, next(self._tags))

    def dispatch_soon(self, queue: Queue) -> None:
        """Deliver what the queue's consumers have room for, at the next loop turn (never
        inside a publish or an ack: a broker answers later, too)."""
        if queue.consumers and queue.name not in self._dispatching:
            self._dispatching.add(queue.name)
            asyncio.get_running_loop().call_soon(self._dispatch, queue)

    def _dispatch(self, queue: Queue) -> None:
        self._dispatching.discard(queue.name)
        while len(queue) and (consumer := queue.next_consumer()) is not None:
            message = queue.pop()
            assert message is not None
            tag = next(self._tags)
            if consumer.acks:
                delivery = consumer.deliver(message, consumer.label, tag)
            else:
                delivery = Delivery(
                    message.body,
                    message.props,
                    tag,
                    message.redelivered,
                    message.routing_key,
                    consumer.label,
                    None,
                    None,
                )
            try:
                consumer.on_delivery(delivery)
            except Exception:
                log.exception("a consumer of %s failed on a delivery", queue.name)
