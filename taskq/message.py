"""The wire envelope of a task message: AMQP 0-9-1 properties and a msgpack body.

Schema 2 (what taskq sends):

- properties: ``message_id`` = task ID, ``type`` = task name, ``content_type`` =
  ``application/x-msgpack``, persistent, ``priority`` (only when not 0), and ``reply_to`` when
  the sender listens for the outcome over AMQP. Nothing else: every property and header costs
  marshalling on both sides, on every message.
- body: msgpack ``[2, args, kwargs, meta]``, where ``meta`` is a map holding only what differs
  from its default: ``a`` attempt (1), ``d`` deliveries (0), ``t`` sent-at in Unix ms,
  ``eta``, ``exp`` (expiry) and ``sf`` (the tick a periodic firing is for) as datetimes,
  ``p`` parent and ``r`` root task IDs, ``ir`` true when no result is to be recorded, ``dd``
  true when the message may repeat one that ran already (an explicit task ID, a publish sent
  again after a dropped connection).
- no headers of taskq's, except on the dead-letter queue: the ``x-taskq-*`` reason and error
  headers. Headers that hooks add at send time (``Envelope.headers``: a trace context, say)
  travel as AMQP headers and stay with the message through retries and redeliveries.

Schema 4 is schema 2 with one more metadata key, ``w``: the message is a step of a workflow
(chain, group, chord: see taskq.workflow.wire for the map it holds). Only such messages use
version 4, so that a worker that does not know workflows (or, for a long chain, the packed
nodes of its rest) dead-letters them as ``invalid-message`` instead of running the step and
dropping the rest of the workflow. Schema 3 (the same, with a chain's rest as maps) still
decodes.

Schema 1 (taskq before 0.2) still decodes: body ``[args, kwargs]``, metadata in ``x-taskq-*``
headers. A message of any other shape goes to the dead-letter queue as ``invalid-message``.

The envelope owns the attempt count: RabbitMQ's ``x-death`` counts differ across versions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import codec
from .exceptions import DecodeError
from .topology import route_of, split_route

SCHEMA_VERSION = 2
SCHEMA_WORKFLOW = 4
SCHEMA_WORKFLOW_V3 = 3  # before a chain's rest travelled as packed nodes: still decoded
SCHEMA_V1 = 1
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
H_PARTITION = "x-taskq-partition"  # the partition a dead message came from (replays go back)

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
    timestamp: dt.datetime | int | None = None
    """When it was sent; an int is a received value no datetime can hold, sent back as is."""
    persistent: bool = True
    content_type: str = CONTENT_TYPE
    route_when_written: Callable[[], tuple[str, str]] | None = dataclasses.field(
        default=None, compare=False
    )
    """``(exchange, routing key)`` to publish to, asked when the message is written (a delayed
    message: the part of its delay spent in the delay levels counts from then, not from when
    it was built, however long it waited for the socket). None: the ones given."""
    resend: Callable[[], OutgoingMessage] | None = dataclasses.field(default=None, compare=False)
    """The message to publish instead if this one must be sent again after a dropped
    connection (it may have arrived already): a task's copy asks its worker to check for a
    recorded outcome before it runs."""


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
    scheduled_for: dt.datetime | None = None
    ignore_result: bool = False
    dedupe: bool = False
    """Whether this message may repeat one that already ran (an explicit task ID, a publish
    sent again): the worker then checks a durable store for a recorded success first."""
    partition: int | None = None
    """The partition of ``queue`` the message goes to or came from (None: not partitioned).
    Not carried in the body: it is the routing key's, so retries and redeliveries of a task
    stay in its partition."""
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The message's own AMQP headers: what ``before_send`` hooks added (never taskq's
    ``x-taskq-*`` headers, nor the broker's ``x-death`` ones)."""
    workflow: Mapping[str, Any] | None = None
    """What follows this task in its workflow (None: not part of one); see
    taskq.workflow.wire. It travels as the metadata key ``w`` of schema 4."""

    @property
    def route(self) -> str:
        """The routing key of the message's work queue: ``queue``, or ``queue.{partition}``."""
        return route_of(self.queue, self.partition)

    def meta(self) -> dict[str, Any]:
        """The schema 2 metadata map: only what differs from the defaults travels."""
        meta: dict[str, Any] = {"t": int(self.sent_at * 1000)}
        if self.attempt != 1:
            meta["a"] = self.attempt
        if self.deliveries:
            meta["d"] = self.deliveries
        for key, value in (
            ("eta", self.eta), ("exp", self.expires), ("sf", self.scheduled_for),
            ("p", self.parent_id), ("r", self.root_id), ("w", self.workflow),
        ):  # fmt: skip
            if value is not None:
                meta[key] = value
        if self.ignore_result:
            meta["ir"] = True
        if self.dedupe:
            meta["dd"] = True
        return meta

    @property
    def schema(self) -> int:
        """The schema version this envelope is sent with (4 for a workflow step, else 2)."""
        return SCHEMA_VERSION if self.workflow is None else SCHEMA_WORKFLOW

    def to_message(self) -> OutgoingMessage:
        """Encode for publishing (schema 2); EncodeError if an argument cannot be carried."""
        return OutgoingMessage(
            body=codec.pack([self.schema, self.args, self.kwargs, self.meta()]),
            message_id=self.task_id,
            type=self.task_name,
            priority=self.priority or None,
            reply_to=self.reply_to,
            headers=self.headers,
            resend=None if self.dedupe else self._sent_again,
        )

    def _sent_again(self) -> OutgoingMessage:
        return dataclasses.replace(self, dedupe=True).to_message()


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
    """Decode a received task message (schema 2, or 1); raise DecodeError saying what is wrong."""
    if content_type != CONTENT_TYPE:
        raise DecodeError(f"content type {content_type!r} is not {CONTENT_TYPE}")
    if not message_id:
        raise DecodeError("message has no message_id (task ID)")
    if not task_name:
        raise DecodeError("message has no type (task name)")
    payload = codec.unpack(body)
    if type(payload) is list and len(payload) == 4 and payload[0] in _SCHEMAS:
        _, args, kwargs, meta = payload
        if type(meta) is not dict:
            raise DecodeError("schema 2 metadata is not a map")
        fields = _meta_fields(meta)
        fields["queue"], fields["partition"] = split_route(queue)
    elif isinstance(payload, list) and len(payload) == 2:
        schema = headers.get(H_SCHEMA, SCHEMA_V1)
        if schema != SCHEMA_V1:
            raise DecodeError(f"unsupported schema version {schema!r}")
        args, kwargs = payload
        fields = _header_fields(headers)
        logical, fields["partition"] = split_route(queue)
        fields["queue"] = fields["queue"] or logical
    else:
        raise DecodeError("body is neither msgpack [2, args, kwargs, meta] nor [args, kwargs]")
    if type(args) is not list or type(kwargs) is not dict:
        raise DecodeError("args must be a msgpack array and kwargs a map")
    if kwargs and not all(type(k) is str for k in kwargs):
        raise DecodeError("kwargs keys must be strings")
    return Envelope(
        task_id=message_id,
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        priority=priority or 0,
        reply_to=reply_to or None,
        headers=user_headers(headers) if headers else {},
        **fields,
    )


_SCHEMAS = (SCHEMA_VERSION, SCHEMA_WORKFLOW, SCHEMA_WORKFLOW_V3)

# Headers that are not the message's own: taskq's, and what the broker adds on dead-lettering
# (a delayed message passes through the delay levels by dead-lettering).
_NOT_USER_HEADERS = ("x-taskq-", "x-death", "x-first-death-", "x-last-death-")


def user_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers of a received message that were sent with it (see ``Envelope.headers``)."""
    return {
        name: value
        for name, value in headers.items()
        if not (isinstance(name, str) and name.startswith(_NOT_USER_HEADERS))
    }


def _meta_fields(meta: Mapping[Any, Any]) -> dict[str, Any]:
    """Envelope fields from a schema 2 metadata map."""
    sent_at = meta.get("t", 0)
    if len(meta) == 1 and type(sent_at) is int and "t" in meta:  # the rest all default
        return {"sent_at": sent_at / 1000}
    return {
        "attempt": _int_of(meta, "a", 1),
        "deliveries": _int_of(meta, "d", 0),
        "sent_at": sent_at / 1000 if isinstance(sent_at, int | float) else 0.0,
        "eta": _datetime_of(meta, "eta"),
        "expires": _datetime_of(meta, "exp"),
        "scheduled_for": _datetime_of(meta, "sf"),
        "parent_id": _text_of(meta, "p"),
        "root_id": _text_of(meta, "r"),
        "ignore_result": meta.get("ir") is True,
        "dedupe": meta.get("dd") is True,
        "workflow": _workflow_of(meta),
    }


def _header_fields(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Envelope fields from schema 1's ``x-taskq-*`` headers."""
    sent_at_ms = headers.get(H_SENT_AT, 0)
    return {
        "queue": _str_header(headers, H_QUEUE),
        "attempt": _int_header(headers, H_ATTEMPT, 1),
        "deliveries": _int_header(headers, H_DELIVERIES, 0),
        "sent_at": sent_at_ms / 1000 if isinstance(sent_at_ms, int | float) else 0.0,
        "eta": _time_header(headers, H_ETA),
        "expires": _time_header(headers, H_EXPIRES),
        "parent_id": _str_header(headers, H_PARENT_ID),
        "root_id": _str_header(headers, H_ROOT_ID),
    }


def _int_of(meta: Mapping[Any, Any], key: str, default: int) -> int:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"metadata {key!r} must be an integer, got {value!r}")
    return value


def _datetime_of(meta: Mapping[Any, Any], key: str) -> dt.datetime | None:
    value = meta.get(key)
    if value is not None and not isinstance(value, dt.datetime):
        raise DecodeError(f"metadata {key!r} must be a datetime, got {value!r}")
    return value


def _workflow_of(meta: Mapping[Any, Any]) -> dict[str, Any] | None:
    value = meta.get("w")
    if value is not None and type(value) is not dict:
        raise DecodeError(f"metadata 'w' must be a map, got {value!r}")
    return value


def _text_of(meta: Mapping[Any, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(f"metadata {key!r} must be a string, got {value!r}")
    return value


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
    flaws: Mapping[str, str]
    """Properties the transport could not read, each with why."""


# What a task message is read from ("properties": the property list could not be parsed).
# The others (app_id, user_id...) mean nothing to taskq: a flaw there lets the message run.
_READ_PROPERTIES = ("properties", "content_type", "headers", "priority", "correlation_id",
                    "reply_to", "message_id", "type")  # fmt: skip


def envelope_of(delivery: ReceivedMessage) -> Envelope:
    """Decode a received task message; DecodeError says what is wrong with it (including
    which property could not be read)."""
    if delivery.flaws:
        unread = [f"property {name} unreadable ({why})" for name, why in delivery.flaws.items()
                  if name in _READ_PROPERTIES]  # fmt: skip
        if unread:
            raise DecodeError("; ".join(unread))
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
