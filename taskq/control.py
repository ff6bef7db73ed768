"""The control plane: ask running workers what they are doing, over ``{prefix}.control``.

Each worker consumes its own exclusive queue ``{prefix}.control.{worker name}``, bound to the
``{prefix}.control`` fanout exchange, and answers every request (``ping``, ``active``,
``reserved``, ``stats``, ``shutdown``) on the requester's reply queue. A client broadcasts one
request and collects replies until its timeout; it never waits longer.

Which workers should have answered? A broadcast cannot know who did not hear it, so the
client compares the replies with the workers it *expects*: the names given with ``expect``
(``--expect`` on the CLI) plus the workers that answered a broadcast of this prefix in the
last hour, remembered in ``$TASKQ_STATE_DIR`` (default ``~/.cache/taskq``). A silent expected
worker is listed as missing, with whether its control queue still exists: ``gone`` (its
connection closed: stopped or killed) or ``not answering`` (connected but stuck). A worker
never seen by this machine and not named in ``expect`` cannot be reported missing.

Messages are JSON (type ``taskq.control``); replies carry the request ID as correlation ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import DecodeError
from .execution import ActiveTask
from .message import OutgoingMessage, envelope_of
from .topology import Names
from .transport import Delivery, Transport

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("taskq.control")

REQUEST_TYPE = "taskq.control"
REPLY_TYPE = "taskq.control.reply"
COMMANDS = ("ping", "active", "reserved", "stats", "shutdown")
LAST_SEEN_TTL = 3600.0
ARGS_WIDTH = 80


def control_queue(prefix: str, worker: str) -> str:
    """The name of a worker's exclusive control queue."""
    return f"{prefix}.control.{worker}"


def _message(payload: dict[str, Any], kind: str, correlation_id: str | None) -> OutgoingMessage:
    return OutgoingMessage(
        body=json.dumps(payload, default=str).encode(),
        type=kind,
        correlation_id=correlation_id,
        persistent=False,
        content_type="application/json",
    )


def short_repr(args: list[Any], kwargs: dict[str, Any], width: int = ARGS_WIDTH) -> str:
    """``args`` and ``kwargs`` as call arguments, cut to ``width`` characters."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


# -- the worker side -------------------------------------------------------------------------


class WorkerView(Protocol):
    """What the control plane needs of a worker (taskq.Worker has it)."""

    @property
    def name(self) -> str:
        """The worker's name."""

    @property
    def active(self) -> Mapping[str, ActiveTask]:
        """The tasks running now, by ID."""

    def reserved_deliveries(self) -> list[Delivery]:
        """The deliveries received and waiting for a slot."""

    def stats(self) -> dict[str, Any]:
        """Who the worker is, what it has done, and how busy it is."""

    def stop(self) -> None:
        """Ask the worker to stop gracefully."""


async def serve(worker: WorkerView, transport: Transport, names: Names) -> None:
    """Consume ``worker``'s control queue and answer requests on ``transport`` until the
    connection closes (the exclusive queue goes with it)."""
    await transport.declare_exchange(names.control, "fanout")
    responder = Responder(worker, transport)
    await transport.consume_bound(
        control_queue(names.prefix, worker.name), names.control, "", responder.on_request
    )


class Responder:
    """Answers one worker's control requests."""

    def __init__(self, worker: WorkerView, transport: Transport) -> None:
        self.worker = worker
        self.transport = transport

    async def on_request(self, kind: str | None, body: bytes) -> None:
        """Handle one request; malformed ones are logged and ignored."""
        try:
            request = json.loads(body)
            command, reply_to = request["command"], request["reply_to"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed control message (%s)", kind)
            return
        target = request.get("worker")
        if target and target != self.worker.name:
            return
        answer = self.answer(command)
        payload = {"worker": self.worker.name, "command": command, "answer": answer}
        reply = _message(payload, REPLY_TYPE, request.get("id"))
        await self.transport.notify(reply_to, reply)
        if command == "shutdown":
            log.info("shutdown requested over the control plane")
            self.worker.stop()

    def answer(self, command: str) -> Any:
        """The reply to ``command`` (an ``error`` object for an unknown one)."""
        worker = self.worker
        if command == "ping":
            return "pong"
        if command == "active":
            return active_tasks(worker.active)
        if command == "reserved":
            return [reserved_task(d) for d in worker.reserved_deliveries()]
        if command == "stats":
            return worker.stats()
        if command == "shutdown":
            return "stopping"
        return {"error": f"unknown command {command!r}"}


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def active_tasks(active: Mapping[str, ActiveTask]) -> list[dict[str, Any]]:
    """The tasks running now, oldest first."""
    now = time.time()
    return [
        {
            "task_id": a.task_id,
            "task": a.task_name,
            "queue": a.queue,
            "attempt": a.attempt,
            "args": short_repr(a.args, a.kwargs),
            "started_at": iso_time(a.started_at),
            "runtime": round(now - a.started_at, 3),
        }
        for a in sorted(active.values(), key=lambda a: a.started_at)
    ]


def reserved_task(delivery: Delivery) -> dict[str, Any]:
    """What a delivery waiting for a slot is (its body is decoded only now, for display)."""
    try:
        envelope = envelope_of(delivery)
    except DecodeError as exc:
        return {"task_id": delivery.message_id, "task": delivery.type, "queue": delivery.queue,
                "attempt": None, "args": f"<not a taskq message: {exc}>"}
    return {
        "task_id": envelope.task_id,
        "task": envelope.task_name,
        "queue": envelope.queue,
        "attempt": envelope.attempt,
        "args": short_repr(envelope.args, envelope.kwargs),
    }


# -- the client side -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """One worker's answer and how long it took to come back."""

    worker: str
    latency: float
    answer: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Missing:
    """An expected worker that did not answer in time."""

    worker: str
    state: str  # "gone" (its control queue no longer exists) or "not answering"
    last_seen: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """Every reply to one broadcast, and who was expected but stayed silent."""

    replies: list[Reply]
    missing: list[Missing]


class LastSeen:
    """The workers of one prefix that answered recently, remembered in a small JSON file."""

    def __init__(self, prefix: str, directory: str | None = None) -> None:
        base = directory or os.environ.get("TASKQ_STATE_DIR") or "~/.cache/taskq"
        self.path = Path(base).expanduser() / f"workers-{prefix}.json"

    def load(self) -> dict[str, float]:
        """Worker name -> last answer time, for answers in the last ``LAST_SEEN_TTL`` s."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        cutoff = time.time() - LAST_SEEN_TTL
        return {
            k: float(v) for k, v in data.items() if isinstance(v, int | float) and v >= cutoff
        }

    def save(self, seen: dict[str, float]) -> None:
        """Write ``seen``; a read-only home only costs the memory, so errors are logged."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(seen))
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot remember workers in %s: %s", self.path, exc)


async def broadcast(
    app: App,
    command: str,
    *,
    timeout: float = 1.0,
    worker: str | None = None,
    expect: Iterable[str] = (),
    memory: LastSeen | None = None,
) -> Result:
    """Send ``command`` to every worker (or only ``worker``) and collect replies.

    Returns when every expected worker has answered, or after ``timeout`` seconds.
    """
    memory = memory or LastSeen(app.names.prefix)
    seen = memory.load()
    expected = {worker} if worker else set(expect) | set(seen)
    replies = await _collect(app.transport, app, command, timeout, worker, expected)
    now = time.time()
    seen.update({r.worker: now for r in replies})
    if command == "shutdown":
        for r in replies:
            seen.pop(r.worker, None)
    memory.save(seen)
    answered = {r.worker for r in replies}
    missing = [
        Missing(name, await _state(app, name), seen.get(name))
        for name in sorted(expected - answered)
    ]
    return Result(sorted(replies, key=lambda r: r.worker), missing)


async def _collect(
    transport: Transport,
    app: App,
    command: str,
    timeout: float,
    worker: str | None,
    expected: set[str],
) -> list[Reply]:
    request_id = str(uuid.uuid4())
    replies: list[Reply] = []
    done = asyncio.Event()
    started = time.monotonic()

    def on_reply(correlation_id: str | None, body: bytes, kind: str | None) -> None:
        if correlation_id != request_id or kind != REPLY_TYPE:
            return
        try:
            payload = json.loads(body)
            replies.append(Reply(payload["worker"], time.monotonic() - started, payload["answer"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed control reply")
            return
        if expected and expected <= {r.worker for r in replies}:
            done.set()

    await transport.declare_exchange(app.names.control, "fanout")
    async with transport.reply_inbox(on_reply) as reply_queue:
        request = {"id": request_id, "command": command, "reply_to": reply_queue, "worker": worker}
        started = time.monotonic()
        await transport.publish(
            app.names.control, "", _message(request, REQUEST_TYPE, None), mandatory=False
        )
        with contextlib.suppress(TimeoutError):  # whoever has not answered by now is missing
            await asyncio.wait_for(done.wait(), timeout)
    return list(replies)


async def _state(app: App, worker: str) -> str:
    depth = await app.transport.queue_depth(control_queue(app.names.prefix, worker))
    return "gone" if depth is None else "not answering"
