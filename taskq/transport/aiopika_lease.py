"""Connections to the broker's nodes with aio-pika, and the single-active-consumer lease.

The lease works as the native one does (see taskq.transport.lease for the whole story): a
bidder consumes the lease queue (``x-single-active-consumer``) on a connection of its own,
the active consumer holds the state record unacked, and replaces it in an AMQP transaction
(its publishes, the new record, the acks of the old ones, ``tx.commit``). The connection is
not robust on purpose: a lease must end with its connection, never come back by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from ..exceptions import BrokerUnavailable, TopologyMismatch
from ..message import OutgoingMessage
from .aiopika_errors import (
    CLIENT_ERRORS,
    LOST,
    broker_error,
    connect_error,
    reply_code,
    timed_out,
)
from .aiopika_properties import amqp_properties, tolerant
from .endpoints import Endpoint
from .errors import PRECONDITION_FAILED
from .lease import QueueSpec, first_of, record_message
from .options import TransportOptions


async def connect(options: TransportOptions, name: str, *, robust: bool) -> Any:
    """An aio-pika connection to the first of ``options.endpoints`` that answers;
    BrokerUnavailable (BrokerRefused for a refused login or vhost) for the last one's failure."""
    failure: BrokerUnavailable | None = None
    opener = aio_pika.connect_robust if robust else aio_pika.connect
    for endpoint in options.endpoints:
        shown = f"{endpoint.client_name}:{name}" if endpoint.client_name else name
        extra: dict[str, Any] = {}
        if endpoint.heartbeat is not None:
            extra["heartbeat"] = endpoint.heartbeat
        try:
            with tolerant():
                return await opener(
                    host=endpoint.host,
                    port=endpoint.port,
                    login=endpoint.user,
                    password=endpoint.password,
                    virtualhost=endpoint.vhost,
                    ssl=endpoint.tls is not None,
                    ssl_context=endpoint.tls,
                    timeout=options.connect_timeout,
                    client_properties={"connection_name": shown},
                    **extra,
                )
        except (*CLIENT_ERRORS, OSError) as exc:
            listening = timed_out(exc) and await _listening(endpoint, options.connect_timeout)
            failure = connect_error(exc, endpoint, listening=listening)
            failure.__cause__ = exc
    assert failure is not None  # options always have an endpoint
    raise failure


async def _listening(endpoint: Endpoint, timeout: float) -> bool:
    """Whether something accepts TCP connections at ``endpoint`` (asked only after a connect
    timed out: a server that is not RabbitMQ waits for more than the AMQP header)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class AioPikaTenure:
    """The active term of a lease holder on an aio-pika channel in transaction mode."""

    def __init__(
        self, channel: AbstractChannel, underlay: Any, spec: tuple[str, str | None], timeout: float
    ) -> None:
        self._channel = channel
        self._underlay = underlay
        self._queue, self._mirror = spec
        self._timeout = timeout
        self._held: dict[int, bytes] = {}
        self._returned: dict[str, int] = {}
        self.started = asyncio.Event()
        self._expected: tuple[str, asyncio.Future[None]] | None = None
        underlay.on_return_callbacks.add(self._on_return)

    def _on_return(self, message: aiormq.abc.DeliveredMessage) -> None:
        message_id = message.header.properties.message_id
        if message_id is not None:
            self._returned[message_id] = int(getattr(message.delivery, "reply_code", 312))

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """A record arrived: this consumer is the active one."""
        self._held[message.delivery_tag or 0] = message.body
        self.started.set()
        if self._expected is not None:
            record_id, back = self._expected
            if message.message_id == record_id and not back.done():
                back.set_result(None)

    @property
    def records(self) -> list[bytes]:
        """The bodies of the records held now, oldest first."""
        return [self._held[tag] for tag in sorted(self._held)]

    @property
    def lost(self) -> bool:
        """Whether the lease is gone (the channel closed)."""
        return bool(self._channel.is_closed)

    async def wait(self, timeout: float | None, stop: asyncio.Event) -> None:
        """Return after ``timeout`` seconds, or as soon as the lease is lost or ``stop`` set."""
        await first_of([self._underlay.closing, stop.wait()], timeout)

    async def commit(
        self, messages: Sequence[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        """Publish ``messages`` (mandatory) and ``record`` and ack the records held, in one
        transaction; the IDs of the messages returned as unroutable. BrokerUnavailable if
        the lease was lost or the commit's outcome is unknown."""
        try:
            return await asyncio.wait_for(self._commit(messages, record), self._timeout)
        except (*LOST, TimeoutError) as exc:
            raise BrokerUnavailable(f"the lease is lost: {exc!r}") from exc

    async def _commit(
        self, messages: Sequence[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        channel = self._underlay
        if self.lost:
            raise ConnectionError("the lease is lost")
        self._returned = {}
        tracked = _track_returns(channel, messages)
        for exchange, routing_key, message in messages:
            await channel.basic_publish(
                message.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=amqp_properties(message, channel),
                mandatory=True,
            )
        new = record_message(record, uuid.uuid4().hex)
        for queue in (self._queue, self._mirror):
            if queue is not None:
                await channel.basic_publish(
                    record, exchange="", routing_key=queue, properties=amqp_properties(new, channel)
                )
        tags = list(self._held)
        for tag in tags:
            await channel.basic_ack(tag)
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected = (str(new.message_id), back)
        try:
            await channel.tx_commit()
            for tag in tags:
                self._held.pop(tag, None)
            await first_of([back, channel.closing], None)
        finally:
            self._expected = None
            _untrack(channel, tracked)
        if not back.done():
            raise ConnectionError("the lease was lost during a commit")
        return dict(self._returned)


def _track_returns(
    channel: Any, messages: Sequence[tuple[str, str, OutgoingMessage]]
) -> dict[str, int]:
    """Have aiormq hand the return of each of ``messages`` to the channel's return callbacks.

    aiormq does so only for a publish it tracks for a confirm (by message ID, in
    ``message_id_delivery_tag`` and ``confirmations``); on this transaction channel, which has
    no confirms, it logged "Unhandled message" and dropped every return, so an unroutable
    firing was lost quietly. Each is tracked here the same way, under a negative tag no
    confirm ever has, with a future nobody awaits; :func:`_untrack` forgets them."""
    tracked: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    for _, _, message in messages:
        if message.message_id is not None:
            tag = -1 - len(tracked)
            tracked[message.message_id] = tag
            channel.message_id_delivery_tag[message.message_id] = tag
            channel.confirmations[tag] = loop.create_future()
    return tracked


def _untrack(channel: Any, tracked: dict[str, int]) -> None:
    for message_id, tag in tracked.items():
        channel.message_id_delivery_tag.pop(message_id, None)
        channel.confirmations.pop(tag, None)


class AioPikaLease:
    """One process's bid for a lease queue, on an aio-pika connection of its own."""

    def __init__(
        self, options: TransportOptions, name: str, queue: QueueSpec, mirror: QueueSpec | None
    ) -> None:
        self._options = options
        self.name = name
        self._queue = queue
        self._mirror = mirror
        self._connection: AbstractConnection | None = None

    async def acquire(self, initial: bytes, stop: asyncio.Event) -> AioPikaTenure | None:
        """Connect, bid and wait until this bidder holds the lease, or None once ``stop``."""
        await self.release()
        try:
            self._connection = await connect(self._options, self.name, robust=False)
            tenure = await self._bid(self._connection, initial)
            await first_of([tenure.started.wait(), tenure.wait(None, stop)], None)
            if tenure.started.is_set() and not tenure.lost:
                return tenure
            if not stop.is_set():
                raise ConnectionError("the connection closed while waiting for the lease")
        except BrokerUnavailable:  # from connect: already says what happened
            await self.release()
            raise
        except (*LOST, OSError) as exc:
            await self.release()
            if reply_code(exc) == PRECONDITION_FAILED:
                raise TopologyMismatch(
                    f"a lease queue ({self._queue[0]}) exists with other arguments than taskq "
                    f"declares: {exc!r}. Delete it or use another prefix."
                ) from exc
            raise broker_error(exc, "bidding for the lease") from exc
        except BaseException:
            await self.release()
            raise
        await self.release()
        return None

    async def _bid(self, connection: AbstractConnection, initial: bytes) -> AioPikaTenure:
        channel = await connection.channel(publisher_confirms=False)
        underlay = await channel.get_underlay_channel()
        name, arguments = self._queue
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        mirror = None
        if self._mirror is not None:
            mirror, mirror_arguments = self._mirror
            await channel.declare_queue(mirror, durable=True, arguments=mirror_arguments)
        ok = queue.declaration_result
        if not ok.message_count and not ok.consumer_count:  # a new lease: publish its record
            await underlay.basic_publish(
                initial,
                exchange="",
                routing_key=name,
                properties=amqp_properties(record_message(initial, uuid.uuid4().hex), underlay),
            )
        await underlay.tx_select()
        tenure = AioPikaTenure(channel, underlay, (name, mirror), self._options.publish_timeout)
        await queue.consume(tenure.on_message, no_ack=False)
        return tenure

    async def release(self) -> None:
        """Close the connection (idempotent): the records go back, the next bidder holds."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*LOST, OSError):
                await connection.close()
