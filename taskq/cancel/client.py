"""Cancelling a task from a client: what ``handle.cancel``, ``app.cancel``, the sync client,
``taskq cancel`` and the dashboard call.

1. The revocation goes to the revocations stream (confirmed), and the call waits until every
   worker reading cancels has acknowledged it (as many as the readers' queue has consumers,
   up to ``REACH_WAIT`` seconds; see taskq.cancel.revoker): from then on no worker starts
   the task, including workers that start later, until the revocation expires.
2. CANCELLED (with the reason) is recorded in the result store, where this process can:
   a durable store (Redis, PostgreSQL) for any task; the AMQP store for a task this process
   sent. A terminal state already recorded stays (a status never moves backwards), and of a
   cancel racing the task's end, the first terminal state stored wins.
3. With ``wait=True``, the running workers are asked (a ``revoke`` control broadcast, up to
   ``ROUND`` seconds, less once every worker seen lately has answered); where the task runs,
   the call then waits until that worker has stopped it and recorded its outcome, or at most
   ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import control
from ..exceptions import BrokerError, ResultTimeout, ResultUnavailable
from ..results.base import ErrorInfo, ResultStore, TaskState, TaskStatus
from ..topology import revocation_stream_arguments
from .revocation import ACK_TYPE, CANCELLED_TYPE, Revocation

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("taskq.cancel")

DEFAULT_WAIT = 30.0
"""Seconds ``cancel(wait=True)`` waits at most for a running task to stop."""

ECHO_WAIT = 5.0
"""Seconds the AMQP store is given to hear back the CANCELLED this process recorded."""

REACH_WAIT = 5.0
"""Seconds a cancel waits at most for the workers reading cancels to acknowledge it (a worker
whose event loop is stuck longer, or that took its place among the readers at the moment the
revocation was published and read it while catching up, does not answer in time)."""

ROUND = 1.0
"""Seconds ``cancel(wait=True)`` gives every worker to answer whether the task runs there
(as long as ``taskq inspect`` waits; less once every worker seen lately has answered)."""


Canceller = Callable[[str, str, bool, float], Awaitable["CancelResult"]]
"""What a handle cancels with: ``(task_id, reason, wait, timeout)`` (the App's cancel)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CancelResult:
    """What a cancel did.

    ``status``: the task's recorded status after the cancel (CANCELLED, or the terminal
    status it reached first), None where the store cannot tell (the AMQP store, for a task
    another process sent; or a task never recorded). ``stopped_on``: the workers where it was
    running and stopped (``wait=True`` only). ``stopped``: with ``wait=True``, False if a
    worker still ran it at the timeout. ``reached``: False if some worker reading cancels had
    not acknowledged the revocation within ``REACH_WAIT`` seconds (it applies there once that
    worker reads it, but a run may start there before).
    """

    task_id: str
    reason: str
    status: TaskStatus | None
    stopped_on: tuple[str, ...] = ()
    stopped: bool = True
    reached: bool = True

    @property
    def cancelled(self) -> bool:
        """Whether the task is recorded CANCELLED."""
        return self.status is TaskStatus.CANCELLED


def canceller_of(app: App) -> Canceller:
    """The Canceller of ``app``'s handles: ``cancel_task`` through it."""

    async def cancel(task_id: str, reason: str, wait: bool, timeout: float) -> CancelResult:
        return await cancel_task(app, task_id, reason=reason, wait=wait, timeout=timeout)

    return cancel


async def cancel_task(
    app: App,
    task_id: str,
    *,
    reason: str = "",
    wait: bool = False,
    timeout: float = DEFAULT_WAIT,
) -> CancelResult:
    """Cancel ``task_id`` through the open ``app`` (see the module doc). BrokerError if the
    revocation cannot be published; LifecycleError if the app is not open."""
    store = app.store
    reached, revocation = await _revoke(app, task_id, reason)
    await _record(store, revocation)
    stopped_on: tuple[str, ...] = ()
    stopped = True
    if wait:
        stopped_on, stopped = await _wait_stopped(app, revocation, timeout)
    status = await _status(store, task_id)
    return CancelResult(task_id, reason, status, stopped_on, stopped, reached)


async def _revoke(app: App, task_id: str, reason: str) -> tuple[bool, Revocation]:
    """Publish the revocation and wait for the readers' acknowledgements: ``(whether every
    reader counted acknowledged it, the revocation)``."""
    transport, names = app.transport, app.names
    expiry = app.settings.revocation_expiry
    readers: set[str] = set()
    enough = asyncio.Event()
    wanted = 0

    def on_ack(correlation_id: str | None, body: bytes, kind: str | None) -> None:
        if kind != ACK_TYPE or correlation_id != task_id:
            return
        with contextlib.suppress(ValueError, TypeError, KeyError):
            readers.add(str(json.loads(body)["reader"]))
        if len(readers) >= wanted:
            enough.set()

    async with transport.reply_inbox(on_ack) as inbox:
        revocation = Revocation.new(task_id, reason, expiry, reply_to=inbox)
        await transport.declare_queue(names.revocations, revocation_stream_arguments(expiry))
        await transport.publish("", names.revocations, revocation.to_message())
        try:
            counted = await transport.queue_depth(names.revocation_readers)
        except BrokerError as exc:  # the revocation holds: only the wait is given up
            log.warning("cancel of %s: cannot count the workers reading cancels: %s",
                        task_id, exc)  # fmt: skip
            return False, revocation
        wanted = counted.consumers if counted is not None else 0
        if len(readers) < wanted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), REACH_WAIT)
    if len(readers) < wanted:
        log.warning("cancel of %s: %d of %d workers acknowledged it within %.0f s",
                    task_id, len(readers), wanted, REACH_WAIT)  # fmt: skip
    return len(readers) >= wanted, revocation


async def _record(store: ResultStore, revocation: Revocation) -> None:
    state = TaskState(
        revocation.task_id,
        TaskStatus.CANCELLED,
        error=ErrorInfo(CANCELLED_TYPE, revocation.reason),
        attempt=0,
    )
    # The AMQP store takes its own reply address: it reaches this process's waiters only.
    await store.record(state, reply_to=store.reply_to())


async def _status(store: ResultStore, task_id: str) -> TaskStatus | None:
    try:
        if not store.durable:
            # The AMQP store learns of the CANCELLED it sent itself through its reply queue.
            with contextlib.suppress(ResultTimeout):
                return (await store.wait(task_id, ECHO_WAIT)).status
        state = await store.get(task_id)
    except ResultUnavailable:
        return None
    return None if state is None else state.status


async def _wait_stopped(
    app: App, revocation: Revocation, timeout: float
) -> tuple[tuple[str, ...], bool]:
    """Ask every worker (a quick round, as ``inspect`` does), then wait on the workers where
    the task still runs until it stopped there: ``(where it ran, whether it stopped)``."""
    args = revocation.to_dict()
    first = await control.broadcast(
        app, "revoke", timeout=min(timeout, ROUND), args={**args, "wait": 0},
        enough=lambda replies: any(_ran(r) for r in replies),
    )  # fmt: skip
    ran = {r.worker: r for r in first.replies if _ran(r)}
    for worker, reply in list(ran.items()):
        if not reply.answer.get("stopped"):
            again = await control.broadcast(
                app, "revoke", timeout=timeout, worker=worker, args={**args, "wait": timeout}
            )
            ran.update({r.worker: r for r in again.replies})
    stopped = all(isinstance(r.answer, dict) and r.answer.get("stopped") for r in ran.values())
    return tuple(sorted(ran)), stopped


def _ran(reply: control.Reply) -> bool:
    return isinstance(reply.answer, dict) and bool(reply.answer.get("was_running"))
