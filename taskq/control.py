"""The control plane: ask running workers what they are doing, over ``{prefix}.control``.

Each worker consumes its own exclusive queue ``{prefix}.control.{worker name}``, bound to the
``{prefix}.control`` fanout exchange, and answers every request (``ping``, ``active``,
``reserved``, ``stats``, ``shutdown``) on the requester's reply queue. A client broadcasts one
request and collects replies until its timeout; it never waits longer.

Which workers should have answered? A broadcast cannot know who did not hear it, so the
client compares the replies with the workers it *expects*: the names given with ``expect``
(``--expect`` on the CLI) plus the workers that answered a broadcast of this broker, vhost
and prefix in the last hour, remembered in ``$TASKQ_STATE_DIR`` (default ``~/.cache/taskq``).

"Missing" means a worker of this broker, vhost and prefix that went away without saying so
(a crash, a SIGKILL, a lost connection). Each worker holds a *presence* queue,
``{prefix}.presence.{worker name}``: durable, with a consumer for as long as the worker is
connected, and an ``x-expires`` lease of an hour that only runs while nobody consumes it. A
worker that stops gracefully deletes it: it is then expected no more. So a silent worker is

- missing, ``gone``: its presence queue exists without a consumer (it died or lost the broker);
- missing, ``not answering``: its presence queue has a consumer (connected, but stuck);
- not missing, and forgotten: it has no presence queue here (it stopped gracefully, or its
  lease ran out an hour after it died, or it belongs to another broker or vhost);
- missing, ``not running``: the same, but it was named explicitly (``expect``, ``worker``).

A worker never seen by this machine and not named in ``expect`` cannot be reported missing.

Messages are JSON (type ``taskq.control``); replies carry the request ID as correlation ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import BrokerError, ConfigurationError, DecodeError
from .execution import ActiveTask
from .message import OutgoingMessage, envelope_of
from .task import Task, args_repr
from .topology import Names, logical_queue
from .transport import RESOURCE_LOCKED, Delivery, Transport, parse_endpoint, split_urls
from .workflow.visibility import workflow_fields

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("taskq.control")

REQUEST_TYPE = "taskq.control"
REPLY_TYPE = "taskq.control.reply"
COMMANDS = ("ping", "active", "reserved", "held", "stats", "shutdown")

HELD_SHOWN = 100
"""Held deliveries a ``held`` reply lists (soonest first); it gives the count of all."""

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""Answers a command given to ``serve`` (e.g. ``revoke``): gets the whole request (its
``args``), returns the answer."""
LAST_SEEN_TTL = 3600.0
"""Seconds a client remembers a worker that answered, and the lease of a presence queue."""
DEPART_TIMEOUT = 5.0

GONE = "gone"
NOT_ANSWERING = "not answering"
NOT_RUNNING = "not running"


def control_queue(prefix: str, worker: str) -> str:
    """The name of a worker's exclusive control queue."""
    return f"{prefix}.control.{worker}"


def presence_queue(prefix: str, worker: str) -> str:
    """The name of a worker's presence queue (see the module doc)."""
    return f"{prefix}.presence.{worker}"


def presence_arguments() -> dict[str, Any]:
    """Arguments of a presence queue: classic, removed by the broker once nobody has consumed
    it for ``LAST_SEEN_TTL`` (durable, so that it outlives the worker's connection)."""
    return {"x-queue-type": "classic", "x-expires": int(LAST_SEEN_TTL * 1000)}


def _message(payload: dict[str, Any], kind: str, correlation_id: str | None) -> OutgoingMessage:
    return OutgoingMessage(
        body=json.dumps(payload, default=str).encode(),
        type=kind,
        correlation_id=correlation_id,
        persistent=False,
        content_type="application/json",
    )


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

    def held_deliveries(self) -> list[tuple[float, Delivery]]:
        """``(due time, delivery)`` of the delayed deliveries held until due, soonest first."""

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The tasks the worker runs, by name (their signatures redact the arguments shown)."""

    def stats(self) -> dict[str, Any]:
        """Who the worker is, what it has done, and how busy it is."""

    def stop(self) -> None:
        """Ask the worker to stop gracefully."""


async def serve(
    worker: WorkerView,
    transport: Transport,
    names: Names,
    handlers: Mapping[str, Handler] | None = None,
) -> None:
    """Consume ``worker``'s control queue and answer requests on ``transport`` until the
    connection closes (the exclusive queue goes with it), and hold its presence queue.
    ``handlers`` answer commands beyond :data:`COMMANDS`."""
    await transport.declare_exchange(names.control, "fanout")
    responder = Responder(worker, transport, handlers)
    queue = control_queue(names.prefix, worker.name)
    try:
        await transport.consume_bound(queue, names.control, "", responder.on_request)
    except BrokerError as exc:
        if exc.reply_code == RESOURCE_LOCKED:
            raise ConfigurationError(
                f"a worker named {worker.name!r} already runs on this broker and prefix: give "
                "each worker a name of its own (taskq-worker --name, Worker(name=...))"
            ) from None
        raise
    await transport.hold(presence_queue(names.prefix, worker.name), presence_arguments())


async def depart(transport: Transport, names: Names, worker: str) -> None:
    """Say that ``worker`` stopped on purpose: delete its presence queue, so that it is not
    expected any more. If the broker cannot be reached within ``DEPART_TIMEOUT`` the worker
    will be reported missing; that is logged, never raised (a stop must not fail on it)."""
    try:
        await asyncio.wait_for(
            transport.release(presence_queue(names.prefix, worker)), DEPART_TIMEOUT
        )
    except (BrokerError, ConnectionError, TimeoutError) as exc:
        log.warning("could not announce the stop of %s; it will show as missing: %s", worker, exc)


class Responder:
    """Answers one worker's control requests."""

    def __init__(
        self,
        worker: WorkerView,
        transport: Transport,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.worker = worker
        self.transport = transport
        self.handlers = dict(handlers or {})

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
        handler = self.handlers.get(command)
        try:
            answer = await handler(request) if handler is not None else self.answer(command)
        except Exception as exc:
            log.exception("control command %s failed", command)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
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
            return active_tasks(worker.active, worker.tasks)
        if command == "reserved":
            return [reserved_task(d, worker.tasks) for d in worker.reserved_deliveries()]
        if command == "held":
            held = worker.held_deliveries()
            shown = [
                {**reserved_task(d, worker.tasks), "eta": iso_time(due)}
                for due, d in held[:HELD_SHOWN]
            ]
            return {"count": len(held), "tasks": shown}
        if command == "stats":
            return worker.stats()
        if command == "shutdown":
            return "stopping"
        return {"error": f"unknown command {command!r}"}


def iso_time(timestamp: float) -> str:
    """A Unix time as ISO 8601 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def active_tasks(
    active: Mapping[str, ActiveTask], tasks: Mapping[str, Task[Any, Any]]
) -> list[dict[str, Any]]:
    """The tasks running now, oldest first."""
    now = time.time()
    return [
        {
            "task_id": a.task_id,
            "task": a.task_name,
            "queue": a.queue,
            "attempt": a.attempt,
            "args": args_repr(tasks.get(a.task_name), a.args, a.kwargs),
            "started_at": iso_time(a.started_at),
            "runtime": round(now - a.started_at, 3),
            **workflow_fields(a.parent_id, a.root_id, a.workflow),
        }
        for a in sorted(active.values(), key=lambda a: a.started_at)
    ]


def reserved_task(delivery: Delivery, tasks: Mapping[str, Task[Any, Any]]) -> dict[str, Any]:
    """What a delivery waiting for a slot is (its body is decoded only now, for display)."""
    try:
        envelope = envelope_of(delivery)
    except DecodeError as exc:
        return {
            "task_id": delivery.message_id,
            "task": delivery.type,
            "queue": logical_queue(delivery.queue),
            "attempt": None,
            "args": f"<not a taskq message: {exc}>",
        }
    return {
        "task_id": envelope.task_id,
        "task": envelope.task_name,
        "queue": envelope.queue,
        "attempt": envelope.attempt,
        "args": args_repr(tasks.get(envelope.task_name), envelope.args, envelope.kwargs),
        **workflow_fields(envelope.parent_id, envelope.root_id, envelope.workflow),
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
    state: str  # GONE, NOT_ANSWERING or NOT_RUNNING (see the module doc)
    last_seen: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """Every reply to one broadcast, and who was expected but stayed silent."""

    replies: list[Reply]
    missing: list[Missing]


def broker_location(broker: str) -> str:
    """``host:port/vhost`` of an AMQP URL: which broker a worker belongs to (no credentials);
    for several URLs (a cluster), every node's, sorted and joined by commas."""
    return ",".join(sorted({parse_endpoint(url).location for url in split_urls(broker)}))


def state_file(kind: str, broker: str, prefix: str, suffix: str, directory: str | None = None
               ) -> Path:  # fmt: skip
    """Where a client keeps ``kind`` state about one broker location and prefix: in
    ``directory``, else ``$TASKQ_STATE_DIR``, else ``~/.cache/taskq``."""
    base = directory or os.environ.get("TASKQ_STATE_DIR") or "~/.cache/taskq"
    where = hashlib.sha256(broker_location(broker).encode()).hexdigest()[:16]
    return Path(base).expanduser() / f"{kind}-{prefix}-{where}{suffix}"


class LastSeen:
    """The workers of one broker, vhost and prefix that answered recently, remembered in a
    small JSON file (one file per broker location and prefix)."""

    def __init__(self, broker: str, prefix: str, directory: str | None = None) -> None:
        self.path = state_file("workers", broker, prefix, ".json", directory)

    @classmethod
    def of(cls, app: App, directory: str | None = None) -> LastSeen:
        """The memory of ``app``'s broker and prefix."""
        return cls(app.settings.broker, app.names.prefix, directory)

    def load(self) -> dict[str, float]:
        """Worker name -> last answer time, for answers in the last ``LAST_SEEN_TTL`` s."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        cutoff = time.time() - LAST_SEEN_TTL
        return {k: float(v) for k, v in data.items() if isinstance(v, int | float) and v >= cutoff}

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
    args: Mapping[str, Any] | None = None,
    enough: Callable[[list[Reply]], bool] | None = None,
) -> Result:
    """Send ``command`` (with ``args``) to every worker (or only ``worker``) and collect
    replies.

    Returns when every expected worker has answered, or once ``enough(replies so far)`` is
    true, or after ``timeout`` seconds. Silent workers are sorted out as the module doc says.
    """
    memory = memory or LastSeen.of(app)
    seen = memory.load()
    named = {worker} if worker else set(expect)
    expected = named if worker else named | set(seen)
    request = _Request(command, worker, dict(args or {}), enough)
    replies = await _collect(app.transport, app, request, timeout, expected)
    now = time.time()
    seen.update({r.worker: now for r in replies})
    if command == "shutdown":
        for r in replies:
            seen.pop(r.worker, None)
    missing = []
    for name in sorted(expected - {r.worker for r in replies}):
        state = await _state(app, name)
        if state == NOT_RUNNING and name not in named:
            seen.pop(name, None)  # it said goodbye (or is not of this broker): forget it
            continue
        missing.append(Missing(name, state, seen.get(name)))
    memory.save(seen)
    return Result(sorted(replies, key=lambda r: r.worker), missing)


@dataclasses.dataclass(frozen=True, slots=True)
class _Request:
    command: str
    worker: str | None
    args: dict[str, Any]
    enough: Callable[[list[Reply]], bool] | None


async def _collect(
    transport: Transport,
    app: App,
    asked: _Request,
    timeout: float,
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
        if asked.enough is not None and asked.enough(replies):
            done.set()

    await transport.declare_exchange(app.names.control, "fanout")
    async with transport.reply_inbox(on_reply) as reply_queue:
        request = {
            "id": request_id, "command": asked.command, "reply_to": reply_queue,
            "worker": asked.worker, "args": asked.args,
        }  # fmt: skip
        started = time.monotonic()
        await transport.publish(
            app.names.control, "", _message(request, REQUEST_TYPE, None), mandatory=False
        )
        with contextlib.suppress(TimeoutError):  # whoever has not answered by now is missing
            await asyncio.wait_for(done.wait(), timeout)
    return list(replies)


async def _state(app: App, worker: str) -> str:
    depth = await app.transport.queue_depth(presence_queue(app.names.prefix, worker))
    if depth is None:
        return NOT_RUNNING
    return NOT_ANSWERING if depth.consumers else GONE
