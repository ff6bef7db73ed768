"""Messages on the wire: outgoing properties, received deliveries, and coalesced acks."""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Mapping
from typing import Any, Protocol

from ..message import OutgoingMessage
from .frames import NO_FLAWS

log = logging.getLogger("taskq.transport")

PERSISTENT = 2
TRANSIENT = 1


def properties(msg: OutgoingMessage) -> dict[str, Any]:
    """The AMQP properties to send for ``msg``, by name, in the order of their flag bits
    (what ``frames.properties`` encodes); absent ones are left out."""
    props: dict[str, Any] = {}
    if msg.content_type:
        props["content_type"] = msg.content_type
    if msg.headers:
        props["headers"] = dict(msg.headers)
    props["delivery_mode"] = PERSISTENT if msg.persistent else TRANSIENT
    if msg.priority is not None:
        props["priority"] = msg.priority
    if msg.correlation_id is not None:
        props["correlation_id"] = msg.correlation_id
    if msg.reply_to is not None:
        props["reply_to"] = msg.reply_to
    if msg.expiration_ms is not None:
        props["expiration"] = str(msg.expiration_ms)
    if msg.message_id is not None:
        props["message_id"] = msg.message_id
    if msg.timestamp is not None:
        props["timestamp"] = msg.timestamp
    if msg.type is not None:
        props["type"] = msg.type
    return props


class AckLedger:
    """Which delivery tags of one channel can be acked, and with which frames. Pure.

    Delivery tags grow on a channel, and ``basic.ack(multiple=True)`` settles every unsettled
    tag up to the one given *on the whole channel*, whatever queue or consumer it came from.
    So one ledger serves every delivery of a channel (never one per queue): a tag enters with
    :meth:`track` in arrival order, :meth:`finish` marks its outcome recorded, :meth:`drop`
    forgets a tag settled otherwise (rejected), and :meth:`flush` returns the ack frames that
    settle exactly the finished tags: one ``multiple=True`` frame for the longest finished run
    at the head of the channel's unsettled tags, and single acks for finished tags behind a
    still-running one (so a long task never holds back the acks of the others).
    """

    __slots__ = ("_done", "_order", "_unsettled")

    def __init__(self) -> None:
        self._order: collections.deque[int] = collections.deque()
        self._unsettled: set[int] = set()
        self._done: set[int] = set()

    def track(self, tag: int) -> None:
        """A delivery with ``tag`` arrived (after every lower tag of the channel)."""
        self._order.append(tag)
        self._unsettled.add(tag)

    def finish(self, tag: int) -> None:
        """The outcome of ``tag`` is recorded: it may be acked."""
        if tag in self._unsettled:
            self._done.add(tag)

    def drop(self, tag: int) -> None:
        """``tag`` was settled without an ack (rejected): never ack it."""
        self._unsettled.discard(tag)
        self._done.discard(tag)

    @property
    def unsettled(self) -> int:
        """How many tracked tags are neither acked nor dropped."""
        return len(self._unsettled)

    def flush(self) -> list[tuple[int, bool]]:
        """The ``(tag, multiple)`` ack frames that settle every finished tag, and nothing else."""
        order, unsettled, done = self._order, self._unsettled, self._done
        last = None
        while order:
            head = order[0]
            if head not in unsettled:  # settled earlier (single ack or reject)
                order.popleft()
            elif head in done:
                order.popleft()
                unsettled.discard(head)
                done.discard(head)
                last = head
            else:
                break
        frames = [] if last is None else [(last, True)]
        for tag in done:
            unsettled.discard(tag)
            frames.append((tag, False))
        done.clear()
        return frames


class AckChannel(Protocol):
    """What acks need of a channel (transport.consumer.ConsumerChannel has it)."""

    @property
    def is_closed(self) -> bool:
        """Whether the channel is gone (its unacked deliveries go back to their queues)."""

    def write_acks(self, acks: list[tuple[int, bool]]) -> None:
        """Send ``(tag, multiple)`` acks; raises ConnectionError if the channel is gone."""

    async def basic_reject(self, tag: int, *, requeue: bool) -> None:
        """Reject one delivery."""


class Acker:
    """The acks of one channel, coalesced once per event-loop turn (see AckLedger).

    Get it with :func:`acker_of`, so that every consumer of a channel shares one.
    """

    __slots__ = ("__weakref__", "_scheduled", "_settled", "channel", "ledger")

    def __init__(self, channel: AckChannel) -> None:
        self.channel = channel
        self.ledger = AckLedger()
        self._scheduled = False
        self._settled: asyncio.Future[None] | None = None

    async def settled(self) -> None:
        """Wait until every delivery tracked so far is acked or rejected."""
        while self.ledger.unsettled:
            if self._settled is None:
                self._settled = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._settled)

    def _wake(self) -> None:
        settled = self._settled
        if settled is not None and not self.ledger.unsettled:
            self._settled = None
            settled.set_result(None)

    def track(self, tag: int) -> None:
        """A delivery with ``tag`` arrived on this channel."""
        self.ledger.track(tag)

    def ack(self, tag: int) -> None:
        """Mark ``tag`` done; the frame goes out at the end of this loop turn."""
        self.ledger.finish(tag)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def reject(self, tag: int, requeue: bool) -> None:
        """Reject ``tag`` now (never coalesced)."""
        self.ledger.drop(tag)
        self._wake()
        await self.channel.basic_reject(tag, requeue=requeue)

    def _flush(self) -> None:
        self._scheduled = False
        frames = self.ledger.flush()
        if not frames:
            return
        self._wake()
        try:
            self.channel.write_acks(frames)
        except ConnectionError as exc:
            log.warning(
                "ack failed (%s): the channel is gone, so the broker will redeliver what was "
                "not acked",
                exc,
            )


_ackers: weakref.WeakKeyDictionary[AckChannel, Acker] = weakref.WeakKeyDictionary()


def acker_of(channel: AckChannel) -> Acker:
    """The one Acker of ``channel``, shared by every consumer on it (tags are per channel)."""
    acker = _ackers.get(channel)
    if acker is None:
        acker = _ackers[channel] = Acker(channel)
    return acker


class Delivery:
    """One received message, with the two ways to end it: ``ack`` and ``reject``."""

    __slots__ = (
        "_acker",
        "_channel",
        "body",
        "content_type",
        "correlation_id",
        "decoded",
        "expiration",
        "flaws",
        "headers",
        "message_id",
        "priority",
        "queue",
        "redelivered",
        "reply_to",
        "routing_key",
        "tag",
        "timestamp",
        "type",
    )

    def __init__(
        self,
        body: bytes,
        props: Mapping[str, Any],
        tag: int,
        redelivered: bool,
        routing_key: str | None,
        queue: str,
        channel: Any,
        acker: Acker | None,
        flaws: Mapping[str, str] = NO_FLAWS,
    ) -> None:
        self.body = body
        self.flaws = flaws
        """Properties that could not be read, each with why (see frames.content_header)."""
        self.headers: Mapping[str, Any] = props.get("headers") or {}
        self.content_type: str | None = props.get("content_type")
        self.message_id: str | None = props.get("message_id")
        self.type: str | None = props.get("type")
        self.priority: int | None = props.get("priority")
        self.reply_to: str | None = props.get("reply_to")
        self.correlation_id: str | None = props.get("correlation_id")
        self.expiration: str | None = props.get("expiration")
        self.timestamp = props.get("timestamp")
        self.redelivered = redelivered
        self.routing_key = routing_key
        self.tag = tag
        self.queue = queue
        self._channel = channel
        self._acker = acker
        self.decoded: Any = None
        """What the worker decoded of it ahead of time (its task envelope, while it was held:
        see taskq.holding), or None."""
        if acker is not None:
            acker.track(tag)

    def as_outgoing(self, **changes: Any) -> OutgoingMessage:
        """This message as an OutgoingMessage (to republish it), with ``changes`` applied."""
        fields: dict[str, Any] = {
            "body": self.body,
            "message_id": self.message_id,
            "type": self.type,
            "headers": dict(self.headers),
            "priority": self.priority,
            "reply_to": self.reply_to,
            "correlation_id": self.correlation_id,
            "timestamp": self.timestamp,
            "content_type": self.content_type or "",
        }
        fields.update(changes)
        return OutgoingMessage(**fields)

    @property
    def stale(self) -> bool:
        """Whether the channel it came on has closed: the broker has taken it back (and will
        deliver it again), so it must not start here."""
        channel = self._channel if self._acker is None else self._acker.channel
        return bool(getattr(channel, "is_closed", False))

    async def ack(self) -> None:
        """Acknowledge: the broker forgets the message (the frame may be coalesced)."""
        if self._acker is not None:
            self._acker.ack(self.tag)
        else:
            await self._channel.basic_ack(self.tag)

    async def reject(self, requeue: bool) -> None:
        """Reject: back to the queue with ``requeue``, else dead-lettered by the broker."""
        if self._acker is not None:
            await self._acker.reject(self.tag, requeue)
        else:
            await self._channel.basic_reject(self.tag, requeue=requeue)
