"""The dead-letter queue tools: list, replay and purge a work queue's ``.dead`` queue.

A ``.dead`` queue holds two kinds of messages:

- those the worker put there, with the ``x-taskq-reason`` and error headers
  (``max-attempts``, ``rejected``, ``expired``, ``crash-loop``, ...);
- those RabbitMQ dead-lettered itself through the work queue's dead-letter exchange (a task
  sent with ``expires`` whose per-message TTL ran out while it waited): they carry no taskq
  reason, only the broker's ``x-death`` header, whose newest entry says why (``expired``).

Listing reads every message with basic.get (no ack) and then rejects them all with requeue,
in the order read: RabbitMQ puts a requeued message back at its old position, so the queue
is left as it was. Replaying publishes a copy to the work queue (confirmed) before acking the
dead copy: a crash in between duplicates a task, never loses one.

The pure part (:func:`describe`, :func:`replay_copy`) decodes messages and builds the copy to
replay; the functions below it do the broker I/O through :class:`taskq.transport.Transport`
(a replay publishes through :class:`taskq.sending.Sender`, the way out of every task message).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError, DecodeError
from .message import (
    H_DEAD_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_EXPIRES,
    H_PARTITION,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    Envelope,
    OutgoingMessage,
    ReceivedMessage,
    envelope_of,
)
from .redact import redact_url
from .text import printable
from .topology import partition_of, route_of
from .transport import Delivery, Transport

if TYPE_CHECKING:
    from .sending import Sender

# Headers that describe a death; a replayed message loses them. H_EXPIRES goes too: an
# operator who replays an expired task wants it to run, not to expire again at once.
DEATH_HEADERS = frozenset(
    {
        H_REASON,
        H_ERROR_TYPE,
        H_ERROR_MESSAGE,
        H_TRACEBACK,
        H_WORKER,
        H_DEAD_AT,
        H_EXPIRES,
        H_PARTITION,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadMessage:
    """What an operator needs to know about one dead-lettered message."""

    task_id: str
    task_name: str
    reason: str
    error_type: str
    error_message: str
    traceback: str
    attempts: int | None
    dead_at: dt.datetime | None
    worker: str | None

    @property
    def error(self) -> str:
        """``type: message`` (or whichever of the two is known)."""
        return ": ".join(part for part in (self.error_type, self.error_message) if part)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 UTC)."""
        data = dataclasses.asdict(self)
        data["dead_at"] = self.dead_at.isoformat() if self.dead_at else None
        data["error"] = self.error
        return data


# -- pure: headers ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def _latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    # RabbitMQ keeps the newest x-death entry first.
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return None


def _time_of(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return None


def _broker_reason(
    headers: Mapping[str, Any], envelope: Envelope | None
) -> tuple[str, str, str, dt.datetime | None]:
    """Reason, error type, message and time of a message RabbitMQ dead-lettered itself."""
    death = _latest_death(headers)
    if death is None:
        return "unknown", "", "no x-taskq-reason and no x-death header", None
    reason = _text(death.get("reason")) or "unknown"
    queue = _text(death.get("queue"))
    if reason == "expired":
        expires = envelope.expires if envelope is not None else None
        message = f"not started before {expires.isoformat()}" if expires else f"expired in {queue}"
        return "expired", "taskq.Expired", message, _time_of(death.get("time"))
    return reason, "x-death", f"{reason} in {queue}", _time_of(death.get("time"))


def _taskq_reason(headers: Mapping[str, Any]) -> tuple[str, str, str, dt.datetime | None]:
    """Reason, error type, message and time written by the worker that dead-lettered it."""
    return (
        _text(headers[H_REASON]),
        _text(headers.get(H_ERROR_TYPE)),
        _text(headers.get(H_ERROR_MESSAGE)),
        _time_of(headers.get(H_DEAD_AT)),
    )


def _envelope_or_none(message: ReceivedMessage) -> Envelope | None:
    try:
        return envelope_of(message)
    except DecodeError:  # not taskq's format: it was dead-lettered as invalid-message
        return None


def describe(message: ReceivedMessage) -> DeadMessage:
    """The DeadMessage of a message in a ``.dead`` queue (its properties, headers and, when it
    is taskq's format, its envelope), URL passwords in its error redacted for display."""
    headers = message.headers
    envelope = _envelope_or_none(message)
    reason, error_type, error_message, dead_at = (
        _taskq_reason(headers) if H_REASON in headers else _broker_reason(headers, envelope)
    )
    return DeadMessage(
        task_id=printable(message.message_id),
        task_name=printable(message.type),
        reason=reason,
        error_type=error_type,
        error_message=redact_url(error_message),
        traceback=redact_url(_text(headers.get(H_TRACEBACK))),
        attempts=envelope.attempt if envelope is not None else None,
        dead_at=dead_at,
        worker=_text(headers.get(H_WORKER)) or None,
    )


def replay_copy(delivery: Delivery) -> OutgoingMessage:
    """The message to send back to the work queue for a dead one: attempt 1, no deliveries
    counted, no expiry (an operator who replays an expired task wants it to run), no death
    headers. A message that is not taskq's format goes back as it was, minus those headers."""
    envelope = _envelope_or_none(delivery)
    if envelope is None:
        kept = {k: v for k, v in delivery.headers.items() if k not in DEATH_HEADERS}
        return delivery.as_outgoing(headers=kept)
    fresh = dataclasses.replace(envelope, attempt=1, deliveries=0, expires=None)
    return fresh.to_message()


def replay_route(message: ReceivedMessage, queue: str, partitions: int) -> str:
    """The routing key to replay a dead message of ``queue`` to: the partition it died in
    (the ``x-taskq-partition`` header) while the queue still has it, else the partition of
    its task ID, as for a new send."""
    if partitions <= 1:
        return queue
    died_in = message.headers.get(H_PARTITION)
    if isinstance(died_in, int) and not isinstance(died_in, bool) and 0 <= died_in < partitions:
        return route_of(queue, died_in)
    return route_of(queue, partition_of(message.message_id or "", partitions))


def selector(
    ids: Collection[str] = (), reason: str | None = None, *, everything: bool = False
) -> Callable[[DeadMessage], bool]:
    """Which dead messages to replay: by ID and/or reason, or all of them.

    Raises ConfigurationError when nothing was asked for (replaying everything must be said).
    """
    if not (ids or reason or everything):
        raise ConfigurationError("say which messages to replay: --id, --reason or --all")
    wanted = frozenset(ids)

    def select(dead: DeadMessage) -> bool:
        if wanted and dead.task_id not in wanted:
            return False
        return reason is None or dead.reason == reason

    return select


# -- broker I/O ------------------------------------------------------------------------------


async def _fetch_all(transport: Transport, queue_name: str, limit: int | None) -> list[Delivery]:
    fetched: list[Delivery] = []
    while limit is None or len(fetched) < limit:
        delivery = await transport.get(queue_name)
        if delivery is None:
            break
        fetched.append(delivery)
    return fetched


async def _requeue(deliveries: list[Delivery]) -> None:
    # In the order read: RabbitMQ puts each back at its old position.
    for delivery in deliveries:
        await delivery.reject(requeue=True)


async def list_dead(
    transport: Transport, queue: str, *, limit: int | None = None
) -> list[DeadMessage]:
    """The messages in the ``.dead`` queue of work queue ``queue``, oldest first, left in place.

    Every message read is rejected with requeue, even if describing one fails; if this process
    dies, closing its channel returns them too.
    """
    fetched: list[Delivery] = []
    try:
        fetched = await _fetch_all(transport, transport.names.dead_queue(queue), limit)
        return [describe(delivery) for delivery in fetched]
    finally:
        await _requeue(fetched)


async def replay(
    sender: Sender, queue: str, select: Callable[[DeadMessage], bool]
) -> list[DeadMessage]:
    """Send the selected dead messages of ``queue`` back to the work queue (a partition of
    it, see :func:`replay_route`); return them.

    Each copy goes to the work exchange with the attempt reset and the death headers removed,
    and is confirmed by the broker before the dead copy is acked. Messages not selected go
    back to the ``.dead`` queue untouched. When the sender's store is durable, the task's
    recorded FAILURE is dropped first, so that the replay's outcome is recorded.
    """
    transport, store = sender.transport, sender.store
    fetched: list[Delivery] = []
    replayed: list[DeadMessage] = []
    acked: set[int] = set()
    try:
        fetched = await _fetch_all(transport, transport.names.dead_queue(queue), None)
        for delivery in fetched:
            dead = describe(delivery)
            if not select(dead):
                continue
            if store.durable and dead.task_id:
                for task_id in (dead.task_id, *_workflow_finals(delivery)):
                    await store.reset(task_id)
            copy = replay_copy(delivery)
            route = replay_route(delivery, queue, transport.options.partitions_of(queue))
            await sender.republish(transport.names.exchange, route, copy)
            await delivery.ack()
            acked.add(id(delivery))
            replayed.append(dead)
    finally:
        # What was not replayed (not selected, or an error stopped the loop) goes back.
        await _requeue([d for d in fetched if id(d) not in acked])
    return replayed


def _workflow_finals(delivery: Delivery) -> list[str]:
    """The final tasks of the workflow a dead step failed (their FAILURE is dropped too on
    replay, so that the workflow, resumed from the step, records its outcome)."""
    envelope = _envelope_or_none(delivery)
    workflow = None if envelope is None else envelope.workflow
    finals = (workflow or {}).get("f", [])
    return [final for final in finals if isinstance(final, str)]


async def purge_dead(transport: Transport, queue: str) -> int:
    """Delete every message of the ``.dead`` queue of ``queue``; return how many."""
    return await transport.purge(transport.names.dead_queue(queue))
