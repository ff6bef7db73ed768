"""Single-active-consumer leases: one holder at a time, and the holder's state handed on.

A lease queue is a durable classic queue with ``x-single-active-consumer``. Every bidder
consumes it on a connection of its own, with manual acks and no prefetch limit. RabbitMQ
delivers to one consumer at a time, the active one; when that consumer's channel or
connection goes (a clean close, or the socket closing when its process is SIGKILLed), what
it held unacked goes back to the queue and the next consumer becomes the active one.

The queue holds a record: the holder's state. The active consumer keeps the record unacked
for as long as it holds the lease, and receiving one is how a bidder learns that it is now
active. The holder replaces the record in an AMQP transaction on that channel: its other
publishes (the tasks that the new state counts as sent), the new record, the ack of every
record it holds, then ``tx.commit``. Only the channel that holds the record can ack it: a
holder whose channel the broker has already closed (it lost the lease and does not know
yet) commits nothing. RabbitMQ applies a commit's publishes and acks together, except when
the broker itself fails during the commit (its transactions are not atomic across queues
then: the tasks may be enqueued and the old record kept).

A bidder that finds the queue without messages and without consumers (a new App, or a queue
someone deleted) publishes an initial record. Two bidders starting together on an empty
queue may both do so; the holder then receives both and merges them.

Each committed record is also published to a mirror queue (``x-max-length: 1``) that anyone
may read (basic.get) without taking part in the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from pamqp import commands

from ..exceptions import BrokerUnavailable, TopologyMismatch
from ..message import CONTENT_TYPE, OutgoingMessage
from .connection import Channel, ChannelClosed, Connection, connect_any
from .endpoints import Endpoint
from .wire import Delivery, acker_of, properties

PRECONDITION_FAILED = 406
RECORD_TYPE = "taskq.lease.record"
QueueSpec = tuple[str, dict[str, Any]]
"""A queue's name and declare arguments."""


class NativeTenure:
    """The active term of a lease holder: the records it holds, and how it replaces them.

    Ends when its channel closes (``lost``); ``commit`` then raises BrokerUnavailable.
    """

    def __init__(self, channel: Channel, queue: str, mirror: str | None, timeout: float) -> None:
        self._channel = channel
        self._queue = queue
        self._mirror = mirror
        self._timeout = timeout
        self._held: dict[int, Delivery] = {}
        self.started = asyncio.Event()
        """Set once the first record arrived: from then on this bidder is the holder."""
        self._expected: tuple[str, asyncio.Future[None]] | None = None

    def on_delivery(self, delivery: Delivery) -> None:
        """A record arrived: this consumer is the active one."""
        self._held[delivery.tag] = delivery
        self.started.set()
        if self._expected is None:
            return
        record_id, back = self._expected
        if delivery.message_id == record_id and not back.done():
            back.set_result(None)

    @property
    def records(self) -> list[bytes]:
        """The bodies of the records held now, oldest first."""
        return [self._held[tag].body for tag in sorted(self._held)]

    @property
    def lost(self) -> bool:
        """Whether the lease is gone (the channel closed)."""
        return self._channel.is_closed

    async def wait(self, timeout: float | None, stop: asyncio.Event) -> None:
        """Return after ``timeout`` seconds, or as soon as the lease is lost or ``stop`` set."""
        await first_of([self._channel.closing, stop.wait()], timeout)

    async def commit(
        self, messages: Sequence[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        """Publish ``messages`` (mandatory) and ``record``, and ack the records held, in one
        transaction; return once the new record is back with this holder. Returns the
        message IDs of ``messages`` that the broker returned as unroutable (with their reply
        codes). BrokerUnavailable if the lease was lost, or the broker did not answer within
        the timeout (the transaction's outcome is then unknown: release the lease, so that
        whoever holds it next reads the record that counts)."""
        try:
            return await self._commit(messages, record)
        except ChannelClosed as exc:
            raise BrokerUnavailable(f"the lease is lost: {exc}") from exc

    async def _commit(
        self, messages: Sequence[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        channel = self._channel
        if channel.is_closed:
            raise ChannelClosed("the lease is lost")
        for exchange, routing_key, message in messages:
            channel.publish(exchange, routing_key, message.body, properties(message),
                            mandatory=True)  # fmt: skip
        record_id = uuid.uuid4().hex
        record_props = properties(record_message(record, record_id))
        channel.publish("", self._queue, record, record_props, mandatory=False)
        if self._mirror is not None:
            channel.publish("", self._mirror, record, record_props, mandatory=False)
        tags = list(self._held)
        acker = acker_of(channel)
        for tag in tags:
            acker.ledger.finish(tag)
        channel.write_acks(acker.ledger.flush())
        back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected = (record_id, back)
        try:
            async with asyncio.timeout(self._timeout):
                await channel.rpc(commands.Tx.Commit())
                for tag in tags:
                    self._held.pop(tag, None)
                returned = channel.take_returns()
                await first_of([back, channel.closing], None)
        except TimeoutError:
            raise ChannelClosed("the broker did not confirm the lease's commit in time") from None
        finally:
            self._expected = None
        if not back.done():
            raise ChannelClosed("the lease was lost during a commit")
        return returned


class NativeLease:
    """One process's bid for a lease queue, on a connection of its own (see the module doc)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        name: str,
        queue: QueueSpec,
        mirror: QueueSpec | None,
        *,
        connect_timeout: float,
        commit_timeout: float,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self._at = -1  # the next bid starts at the node after the last one
        self.name = name
        self._queue = queue
        self._mirror = mirror
        self._connect_timeout = connect_timeout
        self._timeout = commit_timeout
        self._connection: Connection | None = None

    async def acquire(self, initial: bytes, stop: asyncio.Event) -> NativeTenure | None:
        """Connect, bid, and wait until this bidder holds the lease: its Tenure, or None once
        ``stop`` is set. A bidder waits as long as another one holds the lease.

        ``initial`` is the record published into a queue that has none. BrokerUnavailable
        when the broker cannot be reached or the connection drops while waiting;
        TopologyMismatch when the queue exists with other arguments.
        """
        await self.release()
        try:
            connection, self._at = await connect_any(
                self.endpoints, self.name, self._connect_timeout, first=self._at + 1
            )
            self._connection = connection
            channel = await connection.channel()
            tenure = await self._bid(channel, initial)
            await first_of([tenure.started.wait(), connection.closed, stop.wait()], None)
            if tenure.started.is_set() and not tenure.lost:
                return tenure
            if not stop.is_set():
                raise ChannelClosed("the connection closed while waiting for the lease")
        except ChannelClosed as exc:
            await self.release()
            if exc.code == PRECONDITION_FAILED:
                raise TopologyMismatch(
                    f"a lease queue ({self._queue[0]}) exists with other arguments than taskq "
                    f"declares: {exc}. Delete it or use another prefix."
                ) from exc
            raise BrokerUnavailable(f"lost the broker while bidding for the lease: {exc}") from exc
        except BaseException:
            await self.release()
            raise
        await self.release()
        return None

    async def _bid(self, channel: Channel, initial: bytes) -> NativeTenure:
        name, arguments = self._queue
        ok = await channel.rpc(
            commands.Queue.Declare(queue=name, durable=True, arguments=arguments)
        )
        mirror = None
        if self._mirror is not None:
            mirror, mirror_arguments = self._mirror
            await channel.rpc(
                commands.Queue.Declare(queue=mirror, durable=True, arguments=mirror_arguments)
            )
        if not ok.message_count and not ok.consumer_count:
            # Nobody holds a record and none is waiting: this is a new lease. Published before
            # tx.select, so that it needs no commit.
            record = record_message(initial, uuid.uuid4().hex)
            channel.publish("", name, initial, properties(record), mandatory=False)
        await channel.rpc(commands.Tx.Select())
        tenure = NativeTenure(channel, name, mirror, self._timeout)
        await channel.consume(name, name, tenure.on_delivery, prefetch=0)
        return tenure

    async def release(self) -> None:
        """Close the connection (idempotent): the records held go back to the queue, and the
        next bidder in line becomes the holder at once."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def record_message(body: bytes, record_id: str) -> OutgoingMessage:
    """A lease record with ``body`` as an outgoing message."""
    return OutgoingMessage(body=body, message_id=record_id, type=RECORD_TYPE,
                           content_type=CONTENT_TYPE)  # fmt: skip


async def first_of(waits: Sequence[Awaitable[Any]], timeout: float | None) -> None:
    """Wait until one of ``waits`` finishes, or ``timeout``; futures passed in are not
    cancelled (they may belong to someone else), the rest are."""
    pending = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter, original in zip(pending, waits, strict=True):
            if waiter is not original and not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
