"""The worker's side of cancels: the revocations in force, and stopping what runs.

A worker reads the revocations stream (``{prefix}.revocations``) from its first message
before it consumes any task: it publishes a marker of its own and waits until it reads it
back, so it knows every cancel made before it started (a restarted worker too). It goes on
reading, so a cancel made later reaches it within milliseconds. Each delivery it takes is
decided against that set first: a revoked task is acked and recorded CANCELLED, never run.
A workflow step is revoked with its workflow's root too (taskq.cancel.scope.root_of).

Before it reads the stream, a worker takes a consumer on the readers' queue
(``{prefix}.revocations.readers``); a cancel counts those consumers once its revocation is
confirmed, and waits until as many workers acknowledged it (taskq.cancel.client). A worker
acknowledges a revocation it reads live (after its marker), once the revocation is in force
here: from then on it starts no run of that task. A worker not counted took its consumer
after the revocation was published, so its marker comes after it and it reads the
revocation before it takes a task.

A cancel with ``wait=True`` also comes as a control request (``revoke``): the worker then
answers once the task has stopped here (see :meth:`Revoker.on_control`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from ..exceptions import DecodeError
from ..message import OutgoingMessage
from ..streams import CatchUp
from ..topology import Names, revocation_readers_arguments, revocation_stream_arguments
from ..transport import Delivery, Transport
from .revocation import ACK_TYPE, MARKER_TYPE, Revocation, Revoked
from .scope import RunScope

log = logging.getLogger("taskq.cancel")

REMEMBERED_STOPS = 1000
"""Runs stopped by a cancel that a worker remembers (a ``revoke`` request arriving after the
stream's delivery stopped the run is still answered ``was_running``)."""

ACK_WINDOW = 300.0
"""Seconds after a cancel within which a worker acknowledges it (a reader that reads the
whole stream again after a reconnect does not answer cancels long done)."""


class Revoker:
    """The revocations a worker knows, and the runs in it that a cancel can stop."""

    def __init__(self, names: Names, expiry: float) -> None:
        self.names = names
        self.expiry = expiry
        self.revocations = Revoked()
        self._runs: dict[str, RunScope] = {}
        self._by_root: dict[str, set[RunScope]] = {}
        """The runs of workflow steps, by their workflow's root."""
        self._stopping: dict[str, asyncio.Event] = {}
        """Runs cancelled here whose outcome is not recorded yet, set once it is."""
        self._stopped: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._reader: CatchUp | None = None
        self._transport: Transport | None = None
        self._id = uuid.uuid4().hex
        self._acks: set[asyncio.Future[None]] = set()

    # -- the stream ---------------------------------------------------------------------------

    async def start(self, transport: Transport, timeout: float) -> None:
        """Read the stream and return once every revocation made so far is known here.
        BrokerError if the stream cannot be declared (TopologyMismatch: it exists with another
        ``x-max-age``; see docs/guide/cancellation.md); TimeoutError if the worker's own
        marker does not come back within ``timeout`` seconds."""
        self._transport = transport
        # Counted by every cancel from now on: before the marker (see the module doc).
        await transport.hold(self.names.revocation_readers, revocation_readers_arguments())
        arguments = revocation_stream_arguments(self.expiry)
        reader = CatchUp(self.names.revocations, arguments, MARKER_TYPE, self._on_delivery)
        self._reader = reader
        await reader.start(transport, timeout)
        log.info("%d cancel(s) in force", len(self.revocations))

    def _on_delivery(self, delivery: Delivery) -> None:
        try:
            revocation = Revocation.from_delivery(delivery)
        except DecodeError as exc:
            log.warning("ignoring a message on the revocations stream: %s", exc)
            return
        self.revoke(revocation)
        reader = self._reader
        if revocation.reply_to and reader is not None and reader.caught_up:
            self._acknowledge(revocation, revocation.reply_to)

    def _acknowledge(self, revocation: Revocation, reply_to: str) -> None:
        """Tell the canceller this worker knows ``revocation`` (it is in force here now)."""
        if self._transport is None or time.time() - revocation.at > ACK_WINDOW:
            return
        body = json.dumps({"task_id": revocation.task_id, "reader": self._id}).encode()
        ack = OutgoingMessage(body=body, type=ACK_TYPE, correlation_id=revocation.task_id)
        sent = asyncio.ensure_future(self._transport.notify(reply_to, ack))
        self._acks.add(sent)
        sent.add_done_callback(self._sent)

    def _sent(self, sent: asyncio.Future[None]) -> None:
        self._acks.discard(sent)
        if not sent.cancelled() and sent.exception() is not None:  # the canceller times out
            log.debug("could not acknowledge a cancel: %s", sent.exception())

    # -- cancels -------------------------------------------------------------------------------

    def revoke(self, revocation: Revocation) -> RunScope | None:
        """Keep ``revocation`` (if in force) and stop its task if it runs here, and the steps
        of the workflow it is the root of: its run's scope, or None if it does not run here."""
        self.revocations.add(revocation)
        task_id = revocation.task_id
        scope = self._runs.get(task_id)
        if not revocation.in_force():
            return scope
        if scope is not None:
            log.info("cancelling running task %s: %s", task_id, revocation.reason)
            self._stop(scope, revocation.reason)
        for member in list(self._by_root.get(task_id, ())):
            log.info("cancelling running task %s (its workflow's root %s was cancelled): %s",
                     member.task_id, task_id, revocation.reason)  # fmt: skip
            self._stop(member, revocation.reason)
        return scope

    def _stop(self, scope: RunScope, reason: str) -> None:
        if not scope.cancelled:
            self._stopping.setdefault(scope.task_id, asyncio.Event())
            scope.cancel(reason)

    async def on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A ``revoke`` control request: revoke; with the request's ``wait`` (seconds),
        answer once the task has stopped here and its outcome is recorded. ``was_running``:
        it ran here when the cancel came; ``stopped``: it does not run here any more."""
        args = request.get("args")
        revocation = Revocation.from_dict(args)
        wait = float(args.get("wait") or 0) if isinstance(args, dict) else 0.0
        self.revoke(revocation)
        stopping = self._stopping.get(revocation.task_id)
        if stopping is None:
            return {"was_running": revocation.task_id in self._stopped, "stopped": True}
        if wait > 0:
            with contextlib.suppress(TimeoutError):  # answered: it still runs
                await asyncio.wait_for(stopping.wait(), wait)
        return {"was_running": True, "stopped": stopping.is_set()}

    # -- what the executor and the worker ask (taskq.cancel.scope.Cancels) --------------------

    def revoked(self, task_id: str, root_id: str | None = None) -> str | None:
        """The reason ``task_id``, or its workflow's root ``root_id``, was cancelled, if a
        cancel of it is in force."""
        found = self.revocations.get(task_id)
        if found is None and root_id is not None:
            found = self.revocations.get(root_id)
        return None if found is None else found.reason

    def running(self, scope: RunScope) -> None:
        """A run starts; a cancel that came since the delivery was checked applies at once."""
        self._runs[scope.task_id] = scope
        if scope.root_id is not None:
            self._by_root.setdefault(scope.root_id, set()).add(scope)
        reason = self.revoked(scope.task_id, scope.root_id)
        if reason is not None:
            self._stop(scope, reason)

    def ended(self, scope: RunScope) -> None:
        """The run of ``scope`` ended."""
        if self._runs.get(scope.task_id) is scope:
            del self._runs[scope.task_id]
        root = scope.root_id
        members = self._by_root.get(root) if root is not None else None
        if root is not None and members is not None:
            members.discard(scope)
            if not members:
                del self._by_root[root]

    def settled(self, task_id: str | None) -> None:
        """The delivery of ``task_id`` was recorded and acked: a waiting cancel may answer."""
        if task_id is None or not self._stopping:
            return
        event = self._stopping.pop(task_id, None)
        if event is not None:
            event.set()
            self._stopped[task_id] = None
            if len(self._stopped) > REMEMBERED_STOPS:
                self._stopped.popitem(last=False)
