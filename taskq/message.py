"""The wire envelope of a task message (AMQP 0-9-1 properties, ``x-taskq-*`` headers, body).

A task message is:

- properties: ``message_id`` = task ID, ``type`` = task name, ``content_type`` =
  ``application/x-msgpack``, persistent, ``priority``, ``timestamp``, ``app_id``, and
  ``reply_to``/``correlation_id`` when the sender listens for the outcome over AMQP;
- headers: the ``x-taskq-*`` names below (schema version, attempt, deliveries, origin queue,
  ETA, expiry, parent/root IDs; on the dead-letter queue also the reason and error);
- body: msgpack ``[args, kwargs]`` (see :mod:`taskq.codec`).

The envelope owns the attempt count: RabbitMQ's ``x-death`` counts differ across versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any, Protocol

from . import codec
from .exceptions import DecodeError

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-msgpack"

H_SCHEMA = "x-taskq-schema"
H_ATTEMPT = "x-taskq-attempt"
H_DELIVERIES = "x-taskq-deliveries"
H_QUEUE = "x-taskq-queue"
H_SENT_AT = "x-taskq-sent-at"
H_ETA = "x-taskq-eta"
H_EXPIRES = "x-taskq-expires"
H_PARENT_ID = "x-taskq-parent-id"
H_ROOT_ID = "x-taskq-root-id"
# Added on the dead-letter queue:
H_REASON = "x-taskq-reason"
H_ERROR_TYPE = "x-taskq-error-type"
H_ERROR_MESSAGE = "x-taskq-error-message"
H_TRACEBACK = "x-taskq-traceback"
H_WORKER = "x-taskq-worker"
H_DEAD_AT = "x-taskq-dead-at"

# Header values are capped so that a huge traceback cannot exceed the broker's frame limits.
MAX_HEADER_TEXT = 8000


@dataclasses.dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """Everything the transport needs to publish one message; no AMQP library types."""

    body: bytes
    message_id: str | None = None
    type: str | None = None
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    priority: int | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    expiration_ms: int | None = None
    timestamp: dt.datetime | None = None
    persistent: bool = True
    content_type: str = CONTENT_TYPE


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A task message, decoded."""

    task_id: str
    task_name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int = 0
    attempt: int = 1
    deliveries: int = 0
    sent_at: float = 0.0
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    reply_to: str | None = None
    parent_id: str | None = None
    root_id: str | None = None

    def headers(self) -> dict[str, Any]:
        """The ``x-taskq-*`` headers of this envelope."""
        # Only what differs from the defaults travels: every header costs marshalling time on
        # the hot path. The queue is known from where the message is consumed.
        headers: dict[str, Any] = {
            H_SCHEMA: SCHEMA_VERSION,
            H_ATTEMPT: self.attempt,
            # Milliseconds as an integer: AMQP table floats may travel as 32-bit.
            H_SENT_AT: int(self.sent_at * 1000),
        }
        if self.deliveries:
            headers[H_DELIVERIES] = self.deliveries
        if self.eta is not None:
            headers[H_ETA] = self.eta.isoformat()
        if self.expires is not None:
            headers[H_EXPIRES] = self.expires.isoformat()
        if self.parent_id is not None:
            headers[H_PARENT_ID] = self.parent_id
        if self.root_id is not None:
            headers[H_ROOT_ID] = self.root_id
        return headers

    def to_message(self, body: bytes | None = None) -> OutgoingMessage:
        """Encode for publishing; ``body`` may be passed when it is already encoded."""
        return OutgoingMessage(
            body=body if body is not None else codec.pack([self.args, self.kwargs]),
            message_id=self.task_id,
            type=self.task_name,
            headers=self.headers(),
            priority=self.priority,
            reply_to=self.reply_to,
            correlation_id=self.task_id if self.reply_to else None,
            timestamp=dt.datetime.fromtimestamp(self.sent_at or time.time(), dt.UTC),
        )


def _int_header(headers: Mapping[str, Any], name: str, default: int) -> int:
    value = headers.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"header {name} must be an integer, got {value!r}")
    return value


def _time_header(headers: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"header {name} is not an ISO datetime: {value!r}") from exc


def _str_header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def decode_envelope(
    *,
    body: bytes,
    content_type: str | None,
    message_id: str | None,
    task_name: str | None,
    headers: Mapping[str, Any],
    priority: int | None,
    reply_to: str | None,
    queue: str,
) -> Envelope:
    """Decode a received task message; raise DecodeError saying what is wrong with it."""
    if content_type != CONTENT_TYPE:
        raise DecodeError(f"content type {content_type!r} is not {CONTENT_TYPE}")
    if not message_id:
        raise DecodeError("message has no message_id (task ID)")
    if not task_name:
        raise DecodeError("message has no type (task name)")
    schema = headers.get(H_SCHEMA, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise DecodeError(f"unsupported schema version {schema!r}")
    payload = codec.unpack(body)
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], list)
        or not isinstance(payload[1], dict)
        or not all(isinstance(k, str) for k in payload[1])
    ):
        raise DecodeError("body is not msgpack [args, kwargs]")
    sent_at_ms = headers.get(H_SENT_AT, 0)
    return Envelope(
        task_id=message_id,
        task_name=task_name,
        queue=_str_header(headers, H_QUEUE) or queue,
        args=payload[0],
        kwargs=payload[1],
        priority=priority or 0,
        attempt=_int_header(headers, H_ATTEMPT, 1),
        deliveries=_int_header(headers, H_DELIVERIES, 0),
        sent_at=sent_at_ms / 1000 if isinstance(sent_at_ms, int | float) else 0.0,
        eta=_time_header(headers, H_ETA),
        expires=_time_header(headers, H_EXPIRES),
        reply_to=reply_to or None,
        parent_id=_str_header(headers, H_PARENT_ID),
        root_id=_str_header(headers, H_ROOT_ID),
    )


def truncate(text: str, limit: int = MAX_HEADER_TEXT) -> str:
    """Cut ``text`` to ``limit`` characters, keeping the end (where a traceback says most)."""
    return text if len(text) <= limit else "...[truncated]...\n" + text[-limit:]


class ReceivedMessage(Protocol):
    """What decoding needs of a received message (taskq.transport.Delivery has it)."""

    body: bytes
    content_type: str | None
    message_id: str | None
    type: str | None
    headers: Mapping[str, Any]
    priority: int | None
    reply_to: str | None
    queue: str


def envelope_of(delivery: ReceivedMessage) -> Envelope:
    """Decode a received task message; DecodeError says what is wrong with it."""
    return decode_envelope(
        body=delivery.body,
        content_type=delivery.content_type,
        message_id=delivery.message_id,
        task_name=delivery.type,
        headers=delivery.headers,
        priority=delivery.priority,
        reply_to=delivery.reply_to,
        queue=delivery.queue,
    )
