"""The transport as a typed interface: what everything above taskq.transport may use.

Two implementations fill it: :class:`~taskq.transport.core.NativeTransport` (taskq's own AMQP
client, the default) and :class:`~taskq.transport.aiopika.AioPikaTransport` (aio-pika, the
``taskq[aio-pika]`` extra). Both raise taskq.exceptions only (never an AMQP client's error, a
reply code constant or a channel): a lost broker is BrokerUnavailable, a refusal BrokerError
(with ``reply_code``) or TopologyMismatch, a returned or nacked publish PublishError.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from ..message import OutgoingMessage
from ..topology import Names
from .options import TransportOptions
from .wire import Delivery

Reply = Callable[[str | None, bytes, str | None], None]
"""Called with ``(correlation_id, body, type)`` of a message on a reply queue."""

Cancel = Callable[[], Awaitable[None]]
"""Stops a consumer (its channel stays open for the acks of what still runs)."""

NOT_FOUND = 404
"""``BrokerError.reply_code`` of a refusal because an exchange or queue does not exist."""
RESOURCE_LOCKED = 405
"""``BrokerError.reply_code`` of a refusal because an exclusive queue is another's."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueueDepth:
    """Ready messages and consumers of one queue, from a passive declare."""

    name: str
    messages: int
    consumers: int


class Tenure(Protocol):
    """The active term of a lease holder (see taskq.transport.lease)."""

    @property
    def records(self) -> list[bytes]:
        """The bodies of the records held now, oldest first."""

    @property
    def lost(self) -> bool:
        """Whether the lease is gone."""

    async def wait(self, timeout: float | None, stop: asyncio.Event) -> None:
        """Return after ``timeout`` seconds, or as soon as the lease is lost or ``stop`` set."""

    async def commit(
        self, messages: Sequence[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        """Publish ``messages`` and the new ``record`` and ack the records held, in one
        transaction; the message IDs returned as unroutable, with their reply codes.
        BrokerUnavailable if the lease was lost (or the commit's outcome is unknown)."""


class Lease(Protocol):
    """One process's bid for a single-active-consumer lease queue."""

    async def acquire(self, initial: bytes, stop: asyncio.Event) -> Tenure | None:
        """Wait until this bidder holds the lease: its Tenure, or None once ``stop`` is set.
        BrokerUnavailable if the broker is lost; TopologyMismatch if the queue differs."""

    async def release(self) -> None:
        """Give the lease up (idempotent): the next bidder becomes the holder at once."""


class Transport(Protocol):
    """Connections, topology, publishing and consuming for one App (client or worker).

    Publishes are confirmed, mandatory (a return raises PublishError(unroutable=True)) and
    persistent unless the message says otherwise; a publish interrupted by a lost connection
    is retried after the reconnect within ``publish_timeout`` (at least once, never lost).
    """

    options: TransportOptions
    """What the transport was built with."""
    names: Names
    """The entity names of ``options.prefix``."""
    dropped: int
    """Unconfirmed messages (events, notifications) dropped while the broker read nothing."""
    holds_delays: bool
    """Whether delayed messages go to hold queues that workers hold until due (taskq.delays);
    else the whole delay is spent in the delay levels (the in-memory broker)."""

    async def connect(self) -> None:
        """Open the publishing connection; BrokerUnavailable if the broker is down."""

    async def close(self) -> None:
        """Close every connection this transport opened (idempotent)."""

    @property
    def connected(self) -> bool:
        """Whether every opened connection is up now."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes this process holds for the publishing connection's socket."""

    async def declare_work_queue(self, queue: str, *, again: bool = False) -> None:
        """Declare a work queue with its exchange, dead-letter queue and delay binding."""

    async def declare_delay_path(self, delay_ms: int) -> None:
        """Declare the delay exchanges and the TTL queues a message delayed ``delay_ms``
        waits in, with their bindings (idempotent; before its first publish)."""

    async def declare_exchange(self, name: str, kind: str) -> None:
        """Declare one durable exchange of ``kind`` ('direct', 'topic' or 'fanout')."""

    async def queue_depth(self, queue_name: str) -> QueueDepth | None:
        """Ready messages and consumers of a queue (full name), or None if it does not exist."""

    async def argument_refusal(self, queue_name: str, arguments: dict[str, Any]) -> str | None:
        """None if declaring ``queue_name`` with ``arguments`` is accepted, else the refusal."""

    async def server_properties(self) -> dict[str, Any]:
        """What the broker said of itself when the publishing connection opened."""

    async def purge(self, queue_name: str) -> int:
        """Remove every ready message from a queue by its full name; return how many."""

    def beat_lease(self, holder: str) -> Lease:
        """A bid of ``holder`` for the periodic schedulers' lease, on a connection of its own."""

    async def delete_queue(self, queue_name: str) -> None:
        """Delete a queue by its full name (nothing happens if it does not exist)."""

    async def delete_exchange(self, name: str) -> None:
        """Delete an exchange by its full name (nothing happens if it does not exist)."""

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: OutgoingMessage,
        *,
        mandatory: bool = True,
        delivered: asyncio.Future[None] | None = None,
    ) -> None:
        """Publish and wait for the broker's confirm (PublishError if returned or nacked).

        ``delivered``, if given, is resolved once a consumer is known to have received the
        message (its task's outcome came back): the publish may then return before the
        confirm, which only says the same thing later (a transport may ignore it)."""

    async def publish_many(self, items: Sequence[tuple[str, str, OutgoingMessage]]) -> None:
        """Publish ``(exchange, routing_key, message)`` items with pipelined confirms; all or
        PublishError naming the messages not confirmed."""

    async def publish_each(
        self, items: Sequence[tuple[str, str, OutgoingMessage]]
    ) -> list[BaseException | None]:
        """Publish items with pipelined confirms; what became of each, in order (None:
        confirmed, else the error ``publish`` would raise). Raises nothing of its own."""

    async def notify(self, routing_key: str, message: OutgoingMessage) -> None:
        """Publish transient, unconfirmed, non-mandatory on the default exchange (replies)."""

    async def emit(self, exchange: str, messages: Sequence[tuple[str, OutgoingMessage]]) -> int:
        """Publish events unconfirmed and non-mandatory; return how many were dropped."""

    async def consume(
        self,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int,
        held: bool = False,
    ) -> Cancel:
        """Consume work queue ``queue`` (short name or partition route), or with ``held`` its
        hold queue, with manual acks and ``prefetch`` (0: no limit) on a channel of its own;
        deliveries carry ``queue`` as theirs. ``on_delivery`` must not block."""

    async def consume_replies(
        self, queue_name: str, on_reply: Reply, *, expires: float, on_lost: Callable[[str], None]
    ) -> Cancel:
        """Declare a durable reply queue with ``x-expires`` and consume it without acks;
        ``on_lost(new name)`` if it expired while the connection was down."""

    def reply_inbox(self, on_reply: Reply) -> contextlib.AbstractAsyncContextManager[str]:
        """A short-lived exclusive reply queue (one control broadcast): yields its name."""

    async def get(self, queue_name: str) -> Delivery | None:
        """Fetch one message unacked (basic.get), or None if the queue is empty."""

    async def consume_bound(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_message: Callable[[str | None, bytes], Awaitable[None]],
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Declare an exclusive queue bound to ``exchange`` and consume it without acks,
        calling ``on_message(type, body)`` in a task per message (re-declared on reconnect)."""

    async def listen(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Like :meth:`consume_bound`, with ``on_delivery`` called synchronously."""

    async def hold(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue and keep a consumer on it while this transport lives."""

    async def declare_queue(self, queue_name: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue by its full name with ``arguments`` (idempotent;
        TopologyMismatch if it exists with other arguments)."""

    async def claim(self, queue_name: str) -> bool:
        """Declare ``queue_name`` as an exclusive queue of this transport's publishing
        connection: True if it is this connection's now (also if it was already), False if
        another connection holds it. The broker deletes it when that connection closes, or
        when :meth:`delete_queue` deletes it (taskq.limits.concurrency's slots)."""

    async def read_stream(
        self,
        queue_name: str,
        on_delivery: Callable[[Delivery], None],
        *,
        arguments: dict[str, Any],
        prefetch: int,
    ) -> Cancel:
        """Declare the durable stream queue ``queue_name`` (``arguments`` must include
        ``x-queue-type: stream``) and read it from its first message, now and again after
        every reconnect, with manual acks: ``on_delivery`` (which must not block) acks each
        delivery, and at most ``prefetch`` are unacked at once. Returns a cancel function."""

    async def release(self, queue_name: str) -> None:
        """Stop holding ``queue_name`` and delete it."""
