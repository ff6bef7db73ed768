"""Task and worker events: what happened, published to the ``{prefix}.events`` topic exchange.

Routing key = event type: ``task.sent``, ``task.received``, ``task.started``,
``task.succeeded``, ``task.failed``, ``task.retried``, ``task.dead-lettered``,
``task.cancelled`` (the cancel's reason as ``error_message``), ``worker.online``,
``worker.heartbeat``, ``worker.offline``. The body is a JSON object
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
publishes per task (docs/operations/monitoring.md has the measured cost). Both publishers are
hooks (taskq.hooks): a worker adds its :class:`WorkerEvents` to its hooks, an App's Sender
adds a :class:`SentEvents` while it is attached, only when events are on.
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
from .hooks import DeadLettered, Hook, Sending, TaskDone, TaskRun
from .message import Envelope, OutgoingMessage, envelope_of, truncate
from .redact import redact_url, value_repr
from .results.base import ErrorInfo
from .task import Task, args_repr
from .text import printable
from .topology import logical_queue
from .workflow.visibility import position, workflow_fields

if TYPE_CHECKING:
    from .transport import Delivery, Transport

log = logging.getLogger("taskq.events")

CONTENT_TYPE = "application/json"
HEARTBEAT_INTERVAL = 5.0
BUFFER_SIZE = 10_000
REPR_WIDTH = 300  # characters of args and result reprs in an event
ERROR_TEXT = 4000  # characters of an error message or traceback in an event


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
    """Task fields of a decoded envelope; for a step of a workflow (or a task sent by a task)
    its ``root_id`` and ``parent_id``, and for a chord member its ``join``, ``index`` and
    ``of`` (see taskq.workflow.visibility)."""
    fields: dict[str, Any] = {
        "task_id": printable(envelope.task_id),
        "task": printable(envelope.task_name),
        "queue": envelope.queue,
        "attempt": envelope.attempt,
    }
    if envelope.root_id is not None or envelope.parent_id is not None:
        fields.update(workflow_fields(envelope.parent_id, envelope.root_id, envelope.workflow))
    elif envelope.workflow:
        fields.update(position(envelope.workflow))
    return fields


def args_field(envelope: Envelope, task: Task[Any, Any] | None = None) -> str:
    """The task's arguments as a short, redacted repr (see :func:`taskq.task.args_repr`:
    without ``task``, every positional argument shows as ``'***'``)."""
    return args_repr(task, envelope.args, envelope.kwargs, REPR_WIDTH)


def error_fields(error: ErrorInfo) -> dict[str, Any]:
    """An error as event fields: its type, message and traceback, cut and redacted."""
    return {
        "error": error.type,
        "error_message": truncate(redact_url(error.message), ERROR_TEXT),
        "traceback": truncate(redact_url(error.traceback), ERROR_TEXT),
    }


class WorkerEvents(Hook):
    """A worker's event publisher: a hook that buffers an event for each thing that happens
    to a task, and :meth:`run`, which publishes the buffer and the worker's heartbeats."""

    def __init__(self, worker: str, tasks: Mapping[str, Task[Any, Any]] | None = None) -> None:
        self.worker = worker
        self.tasks: Mapping[str, Task[Any, Any]] = tasks or {}
        self.dropped = 0
        self._buffer: collections.deque[OutgoingMessage] = collections.deque(maxlen=BUFFER_SIZE)
        self._wake = asyncio.Event()
        self._origin = {"worker": worker, "hostname": socket.gethostname(), "pid": os.getpid()}

    def emit(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Buffer an event for publishing (the oldest is dropped, and counted, when full)."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(encode(kind, {"time": time.time(), **self._origin, **fields}))
        self._wake.set()

    # -- hooks (they never block: they only append to the buffer) ---------------------------

    def on_received(self, delivery: Delivery) -> None:
        """``task.received``: the delivery waits for a slot."""
        self.emit("task.received", delivery_fields(delivery))

    async def before_run(self, run: TaskRun) -> None:
        """``task.started``: the task's function is about to run."""
        self.emit(
            "task.started",
            {
                **envelope_fields(run.envelope),
                "args": args_field(run.envelope, self.tasks.get(run.envelope.task_name)),
            },
        )

    async def on_success(self, done: TaskDone) -> None:
        """``task.succeeded``, with a short ``result``."""
        self._finished("succeeded", done, result=value_repr(done.result, REPR_WIDTH))

    async def on_failure(self, done: TaskDone) -> None:
        """``task.failed``, with the error."""
        self._finished("failed", done)

    async def on_retry(self, done: TaskDone) -> None:
        """``task.retried``, with the error and the ``delay`` before the next attempt."""
        self._finished("retried", done, delay=done.delay)

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        """``task.dead-lettered``, with the ``reason``, the error and, if the task ran (it
        raised Reject, or failed its last attempt), its ``runtime``."""
        fields = {**delivery_fields(dead.delivery), "reason": dead.reason,
                  **error_fields(dead.error)}  # fmt: skip
        if dead.runtime is not None:
            fields["runtime"] = dead.runtime
        self.emit("task.dead-lettered", fields)

    async def on_cancel(self, done: TaskDone) -> None:
        """``task.cancelled``, with the reason as the error message."""
        self._finished("cancelled", done)

    def _finished(self, kind: str, done: TaskDone, **extra: Any) -> None:
        fields = {**envelope_fields(done.envelope), "runtime": done.runtime, **extra}
        if done.error is not None:
            fields.update(error_fields(done.error))
        self.emit(f"task.{kind}", fields)

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


class SentEvents(Hook):
    """A client's ``task.sent`` publisher: a ``before_send`` hook, so that ``task.sent``
    comes before the worker's ``task.received``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def before_send(self, send: Sending) -> None:
        """Publish ``task.sent`` (unconfirmed, like every event)."""
        transport, envelope = self.transport, send.envelope
        exchange = transport.names.events
        if transport not in _declared:
            await transport.declare_exchange(exchange, "topic")
            _declared.add(transport)
        fields: dict[str, Any] = {
            "time": time.time(),
            **envelope_fields(envelope),
            "args": args_field(envelope),
        }
        if envelope.eta is not None:
            fields["eta"] = envelope.eta.isoformat()
        await transport.emit(exchange, [("task.sent", encode("task.sent", fields))])
