"""Task and worker events: what happened, published to the ``{prefix}.events`` topic exchange.

Routing key = event type: ``task.sent``, ``task.received``, ``task.started``,
``task.succeeded``, ``task.failed``, ``task.retried``, ``task.dead-lettered``,
``worker.online``, ``worker.heartbeat``, ``worker.offline``. The body is a JSON object
(readable by any language) with at least ``type``, ``time`` and, for task events,
``task_id``, ``task``, ``queue`` and ``attempt``. ``task.sent`` and ``task.started`` also
carry ``args`` (a short repr, redacted as taskq.redact does), ``task.succeeded`` a short
``result``, and ``task.failed``, ``task.retried`` and ``task.dead-lettered`` the ``error``
type, ``error_message`` and ``traceback`` (cut to a few KB, URL passwords redacted): what a
dashboard needs to show a task's history without asking the result store. ``task.succeeded``,
``task.failed`` and ``task.retried`` carry the ``runtime`` of the task's function in seconds,
and ``task.dead-lettered`` too when the task ran.

Events are telemetry, not records: published unconfirmed, non-persistent and non-mandatory
(an event nobody listens to is dropped by the exchange). The worker's hot path only appends to
a bounded buffer; a flusher task publishes it. When the buffer is full the oldest events are
dropped and counted, so a blocked broker connection never slows tasks down. Nor does it make
the process hold more than a bounded amount for the socket: while RabbitMQ reads nothing (a
memory alarm), events that find about 1 MiB waiting are dropped by the transport and counted
too (``events_dropped`` in the worker's stats).

Publishing is opt-in (``events=True`` setting, ``taskq-worker --events``): it costs a few
publishes per task (docs/operations/monitoring.md has the measured cost). The observation
points themselves (the reserved registry, run times, listeners such as Prometheus metrics) are
always on.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import socket
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import DecodeError
from .message import Envelope, OutgoingMessage, envelope_of, truncate
from .redact import call_repr, redact_url, value_repr
from .results.base import ErrorInfo
from .text import printable
from .topology import logical_queue

if TYPE_CHECKING:
    from .transport import Delivery, Transport

log = logging.getLogger("taskq.events")

CONTENT_TYPE = "application/json"
HEARTBEAT_INTERVAL = 5.0
BUFFER_SIZE = 10_000
REPR_WIDTH = 300  # characters of args and result reprs in an event
ERROR_TEXT = 4000  # characters of an error message or traceback in an event

Listener = Callable[[str, Mapping[str, Any]], None]
"""Called with ``(event type, fields)`` for every event, published or not (e.g. metrics)."""


def encode(kind: str, fields: Mapping[str, Any]) -> OutgoingMessage:
    """The wire form of one event."""
    body = json.dumps({"type": kind, **fields}, default=str, separators=(",", ":")).encode()
    return OutgoingMessage(body=body, type=kind, persistent=False, content_type=CONTENT_TYPE)


def decode(body: bytes) -> dict[str, Any]:
    """An event's fields from its body; ValueError if it is not a JSON object."""
    value = json.loads(body)
    if not isinstance(value, dict):
        raise ValueError("an event body must be a JSON object")
    return value


def delivery_fields(delivery: Delivery) -> dict[str, Any]:
    """Task fields of a delivery (its body is decoded only for this: events are opt-in)."""
    try:
        return envelope_fields(envelope_of(delivery))
    except DecodeError:  # not taskq's format: it will be dead-lettered
        return {"task_id": printable(delivery.message_id), "task": printable(delivery.type),
                "queue": logical_queue(delivery.queue), "attempt": None}  # fmt: skip


def envelope_fields(envelope: Envelope) -> dict[str, Any]:
    """Task fields of a decoded envelope."""
    return {
        "task_id": printable(envelope.task_id),
        "task": printable(envelope.task_name),
        "queue": envelope.queue,
        "attempt": envelope.attempt,
    }


def args_field(envelope: Envelope) -> str:
    """The task's arguments as a short, redacted repr."""
    return call_repr(envelope.args, envelope.kwargs, REPR_WIDTH)


def error_fields(error: ErrorInfo) -> dict[str, Any]:
    """An error as event fields: its type, message and traceback, cut and redacted."""
    return {
        "error": error.type,
        "error_message": truncate(redact_url(error.message), ERROR_TEXT),
        "traceback": truncate(redact_url(error.traceback), ERROR_TEXT),
    }


class WorkerEvents:
    """A worker's observation points.

    Keeps the deliveries waiting for a slot (``inspect reserved``), tells listeners, and, when
    ``publish`` is on, buffers events for :meth:`run` to publish. Run times come with each
    outcome (measured per run by the executor: see taskq.outcome.Decision).
    """

    def __init__(self, worker: str, *, publish: bool) -> None:
        self.worker = worker
        self.publish = publish
        self.listeners: list[Listener] = []
        self.reserved: dict[int, Delivery] = {}
        self.dropped = 0
        self._buffer: collections.deque[OutgoingMessage] = collections.deque(maxlen=BUFFER_SIZE)
        self._wake = asyncio.Event()
        self._origin = {"worker": worker, "hostname": socket.gethostname(), "pid": os.getpid()}

    # -- the worker's hooks (synchronous, never block) ---------------------------------------

    def emit(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Tell the listeners and, if publishing, buffer the event."""
        for listener in self.listeners:
            try:
                listener(kind, fields)
            except Exception:  # an observer must never break the worker
                log.exception("event listener failed on %s", kind)
        if self.publish:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(encode(kind, {"time": time.time(), **self._origin, **fields}))
            self._wake.set()

    def reserve(self, delivery: Delivery) -> None:
        """A delivery arrived and waits for a slot: ``task.received``."""
        self.reserved[id(delivery)] = delivery
        if self.publish or self.listeners:
            self.emit("task.received", delivery_fields(delivery))

    def unreserve(self, delivery: Delivery) -> None:
        """The delivery got a slot (or the worker is stopping)."""
        self.reserved.pop(id(delivery), None)

    def started(self, envelope: Envelope) -> None:
        """The task's function is about to run: ``task.started``."""
        if self.publish or self.listeners:
            fields = envelope_fields(envelope)
            if self.publish:
                fields["args"] = args_field(envelope)
            self.emit("task.started", fields)

    def finished(
        self,
        kind: str,
        envelope: Envelope,
        runtime: float,
        *,
        error: ErrorInfo | None = None,
        result: Any = None,
        **extra: Any,
    ) -> None:
        """A task that ran for ``runtime`` seconds ended as ``kind`` (``succeeded`` with
        ``result``, ``failed`` or ``retried`` with ``error``)."""
        if self.publish or self.listeners:
            fields = {**envelope_fields(envelope), "runtime": runtime, **extra}
            if error is not None:
                fields.update(error_fields(error))
            elif self.publish:
                fields["result"] = value_repr(result, REPR_WIDTH)
            self.emit(f"task.{kind}", fields)

    def dead_lettered(
        self, delivery: Delivery, reason: str, error: ErrorInfo, runtime: float | None = None
    ) -> None:
        """A message went to its queue's ``.dead`` queue: ``task.dead-lettered`` (with the
        ``runtime`` of its task, when it ran: e.g. raised Reject, or failed its last attempt)."""
        if self.publish or self.listeners:
            fields = {**delivery_fields(delivery), "reason": reason, **error_fields(error)}
            if runtime is not None:
                fields["runtime"] = runtime
            self.emit("task.dead-lettered", fields)

    # -- publishing --------------------------------------------------------------------------

    async def run(
        self,
        transport: Transport,
        stopped: asyncio.Event,
        idle: Callable[[], bool],
        stats: Callable[[], Mapping[str, Any]],
    ) -> None:
        """Publish buffered events and heartbeats until ``stopped`` is set and ``idle()`` says
        no task is left running; then publish ``worker.offline``."""
        if not self.publish:
            return
        exchange = transport.names.events
        await transport.declare_exchange(exchange, "topic")
        self.emit("worker.online", stats())
        next_beat = time.monotonic() + HEARTBEAT_INTERVAL
        while not (stopped.is_set() and idle()):
            await self._flush(transport, exchange)
            if time.monotonic() >= next_beat:
                self.emit("worker.heartbeat", stats())
                next_beat = time.monotonic() + HEARTBEAT_INTERVAL
                continue
            # While stopping, look again soon: running tasks still emit their outcomes.
            wait = 0.05 if stopped.is_set() else next_beat - time.monotonic()
            await _wait_any(self._wake, stopped, timeout=wait)
        self.emit("worker.offline", stats())
        await self._flush(transport, exchange)

    async def _flush(self, transport: Transport, exchange: str) -> None:
        self._wake.clear()
        while self._buffer:
            batch = [(m.type or "", m) for m in self._buffer]
            self._buffer.clear()
            self.dropped += await transport.emit(exchange, batch)


async def _wait_any(first: asyncio.Event, second: asyncio.Event, *, timeout: float) -> None:
    waiters = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# Transports on which the events exchange is known to exist (a publish to a missing exchange
# would close the channel).
_declared: weakref.WeakSet[Transport] = weakref.WeakSet()


async def sent(transport: Transport, *sends: Envelope) -> None:
    """Publish ``task.sent`` for these task sends (the caller checks that events are on)."""
    exchange = transport.names.events
    if transport not in _declared:
        await transport.declare_exchange(exchange, "topic")
        _declared.add(transport)
    batch = []
    for envelope in sends:
        fields: dict[str, Any] = {
            "time": time.time(),
            **envelope_fields(envelope),
            "args": args_field(envelope),
        }
        if envelope.eta is not None:
            fields["eta"] = envelope.eta.isoformat()
        batch.append(("task.sent", encode("task.sent", fields)))
    await transport.emit(exchange, batch)
