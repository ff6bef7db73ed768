"""Act: the one place that turns an Outcome into broker actions, then acks.

Every branch records first (a result, a delay level, the dead-letter queue, or back in the
queue) and acks last, so that every delivery ends in exactly one recorded place.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from . import outcome as oc
from .cancel.revocation import CANCELLED_TYPE
from .exceptions import EncodeError
from .hooks import DeadLettered, Hooks, TaskDone
from .message import (
    H_DEAD_AT,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_PARTITION,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    Envelope,
    truncate,
)
from .recorder import Recorder
from .results.base import ErrorInfo, TaskStatus
from .text import printable
from .topology import MAX_DELAY_MS, Names, split_route
from .transport import Delivery

if TYPE_CHECKING:
    from .sending import Sender
    from .workflow.runner import Continuation

log = logging.getLogger("taskq.worker")


@dataclasses.dataclass(slots=True)
class Counters:
    """What a worker has done since it started."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    cancelled: int = 0
    deferred: int = 0


class Actions:
    """Records outcomes and acts on the broker for one worker (every message it publishes
    goes out through ``sender.republish``)."""

    def __init__(
        self,
        *,
        sender: Sender,
        names: Names,
        recorder: Recorder,
        counters: Counters,
        hooks: Hooks,
        worker: str,
        workflow: Continuation | None = None,
    ) -> None:
        self.workflow = workflow
        """Sends what follows a workflow step, before its ack (None: no workflows)."""
        self.sender = sender
        self.names = names
        self.recorder = recorder
        self.counters = counters
        self.hooks = hooks
        self.worker = worker

    async def act(self, delivery: Delivery, decision: oc.Decision) -> None:
        """Turn a decision's outcome into broker actions. Every branch records, then acks last."""
        envelope, runtime = decision.envelope, decision.runtime
        match decision.outcome:
            case oc.Succeeded(value):
                assert envelope is not None and runtime is not None
                try:
                    await self.recorder.record(envelope, TaskStatus.SUCCESS, result=value)
                except EncodeError as exc:
                    failed = oc.Failed(oc.error_info(exc))
                    await self.act(delivery, dataclasses.replace(decision, outcome=failed))
                    return
                await self._succeeded(envelope, runtime, value)
            case oc.Failed(error, reason):
                assert envelope is not None and runtime is not None
                await self._failed(delivery, envelope, runtime, error, reason)
            case oc.RetryLater(delay, error, priority):
                assert envelope is not None and runtime is not None
                await self._retry(envelope, runtime, delay, error, priority)
            case oc.DeadLetter(reason, error):
                await self._refused(delivery, reason, error, envelope, runtime)
            case _:
                await self._not_run(delivery, envelope, decision.outcome, runtime)
        await delivery.ack()

    async def _not_run(
        self,
        delivery: Delivery,
        envelope: Envelope | None,
        outcome: oc.Outcome,
        runtime: float | None,
    ) -> None:
        """The outcomes of a delivery whose task did not run to an end of its own."""
        match outcome:
            case oc.CountRedelivery(deliveries):
                assert envelope is not None
                counted = dataclasses.replace(envelope, deliveries=deliveries)
                await self.sender.republish(
                    self.names.exchange, delivery.queue, counted.to_message()
                )
            case oc.Requeue():
                # Never started: republish it as it came, then ack. A reject would set the
                # broker's redelivered flag, and the next worker would count a crash for a
                # task that never ran (a few restarts would dead-letter it as crash-loop).
                await self.sender.republish(
                    self.names.exchange, delivery.queue, delivery.as_outgoing()
                )
                self.counters.requeued += 1
            case oc.Skip(duplicate):
                await self._skipped(delivery, envelope, duplicate)
            case oc.Cancelled(reason):
                assert envelope is not None
                await self._cancelled(envelope, reason, runtime)
            case oc.Defer(delay):
                assert envelope is not None
                await self._defer(envelope, delay)

    # -- broker actions ----------------------------------------------------------------------

    async def _succeeded(self, envelope: Envelope, runtime: float, value: Any) -> None:
        """Recorded: send what follows a workflow step, run the ``on_success`` hooks."""
        if envelope.workflow and self.workflow is not None:
            await self.workflow.succeeded(envelope, value)
        self._finished(envelope, runtime, "succeeded")
        if self.hooks.on_success:
            done = TaskDone(envelope, runtime, result=value)
            await self.hooks.notify(self.hooks.on_success, done)

    async def _skipped(
        self, delivery: Delivery, envelope: Envelope | None, duplicate: bool
    ) -> None:
        """Not run: a duplicate publish of a workflow step, or a task that succeeded before
        (its workflow successors are sent again: the run before may have died first)."""
        if duplicate:
            log.info("task %s was claimed by another publish; not running it", delivery.message_id)
            return
        log.info("task %s already succeeded; not running it again", delivery.message_id)
        if envelope is not None and envelope.workflow and self.workflow is not None:
            await self.workflow.skipped(envelope)

    async def _defer(self, envelope: Envelope, delay: float) -> None:
        # The same attempt and deliveries, back to its own partition after ``delay``. Built
        # afresh, not copied: the x-death headers of an earlier trip through the delay levels
        # would make RabbitMQ drop it as a dead-letter cycle.
        delay_ms = max(1, min(MAX_DELAY_MS, math.ceil(delay * 1000)))
        await self.sender.republish_delayed(delay_ms, envelope.route, envelope.to_message())
        self.counters.deferred += 1

    async def _cancelled(self, envelope: Envelope, reason: str, runtime: float | None) -> None:
        error = ErrorInfo(CANCELLED_TYPE, reason)
        await self.recorder.record(envelope, TaskStatus.CANCELLED, error=error)
        if envelope.workflow and self.workflow is not None:
            await self.workflow.cancelled(envelope, error)
        self.counters.cancelled += 1
        what = "cancelled" + (f": {reason}" if reason else "")
        self._log(envelope, runtime or 0.0, what, logging.INFO)
        if self.hooks.on_cancel:
            done = TaskDone(envelope, runtime or 0.0, error=error)
            await self.hooks.notify(self.hooks.on_cancel, done)

    async def _refused(
        self,
        delivery: Delivery,
        reason: str,
        error: ErrorInfo,
        envelope: Envelope | None,
        runtime: float | None,
    ) -> None:
        """Never run, or rejected: dead-letter it, then record the failure if the task is
        known (the caller learns why instead of timing out). The copy goes first, so that a
        caller who sees the failure finds the message in the dead-letter queue."""
        await self._dead_letter(delivery, reason, error, envelope, runtime)
        if envelope is not None:
            await self.recorder.record(envelope, TaskStatus.FAILURE, error=error)
        if envelope is not None and envelope.workflow and self.workflow is not None:
            await self.workflow.failed(envelope, error)

    async def _failed(
        self,
        delivery: Delivery,
        envelope: Envelope,
        runtime: float,
        error: ErrorInfo,
        reason: str = oc.MAX_ATTEMPTS,
    ) -> None:
        """The last attempt failed: record it, keep a copy in the dead-letter queue (with
        ``reason``: max-attempts, or hard-timeout for a process the pool had to kill); the
        copy first, as in ``_refused``."""
        await self._dead_letter(delivery, reason, error, envelope, runtime)
        await self.recorder.record(envelope, TaskStatus.FAILURE, error=error)
        if envelope.workflow and self.workflow is not None:
            await self.workflow.failed(envelope, error)
        self._finished(envelope, runtime, "failed", error)
        if self.hooks.on_failure:
            done = TaskDone(envelope, runtime, error=error)
            await self.hooks.notify(self.hooks.on_failure, done)

    async def _retry(
        self,
        envelope: Envelope,
        runtime: float,
        delay: float,
        error: ErrorInfo,
        priority: int | None,
    ) -> None:
        await self.recorder.record(envelope, TaskStatus.RETRYING, error=error)
        message = dataclasses.replace(
            envelope,
            attempt=envelope.attempt + 1,
            deliveries=0,
            priority=envelope.priority if priority is None else priority,
        ).to_message()
        delay_ms = min(MAX_DELAY_MS, math.ceil(delay * 1000))  # never early by a fraction
        sender = self.sender
        if delay_ms > 0:
            # Back to its own partition.
            await sender.republish_delayed(delay_ms, envelope.route, message)
        else:
            await sender.republish(self.names.exchange, envelope.route, message)
        self.counters.retried += 1
        what = f"retrying in {delay:.3f} s after {error.type}: {error.message}"
        self._log(envelope, runtime, what, logging.INFO)
        if self.hooks.on_retry:
            done = TaskDone(envelope, runtime, error=error, delay=delay)
            await self.hooks.notify(self.hooks.on_retry, done)

    async def _dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        error: ErrorInfo,
        envelope: Envelope | None,
        runtime: float | None,
    ) -> None:
        queue, partition = split_route(delivery.queue)  # one .dead queue for every partition
        headers: dict[str, Any] = {
            **({} if partition is None else {H_PARTITION: partition}),
            H_REASON: reason,
            H_ERROR_TYPE: truncate(error.type, 500),
            H_ERROR_MESSAGE: truncate(error.message),
            H_TRACEBACK: truncate(error.traceback),
            H_WORKER: self.worker,
            H_DEAD_AT: int(time.time() * 1000),
        }
        try:
            copy = delivery.as_outgoing(headers={**delivery.headers, **headers})
            await self.sender.republish(self.names.dlx, queue, copy)
        except EncodeError as exc:
            # The producer's own headers cannot go out again (too large for a frame once
            # ours are added, or nested too deep): park the message without them rather
            # than give it back to be delivered, fail and given back forever.
            headers[H_ERROR_MESSAGE] = truncate(
                f"{error.message} (the message's own headers were dropped: {exc})"
            )
            await self.sender.republish(
                self.names.dlx, queue, delivery.as_outgoing(headers=headers)
            )
        self.counters.dead_lettered += 1
        if self.hooks.on_dead_letter:
            dead = DeadLettered(delivery, envelope, reason, error, runtime)
            await self.hooks.notify(self.hooks.on_dead_letter, dead)
        log.warning(
            "message %s (%s) dead-lettered to %s: %s: %s",
            printable(delivery.message_id), printable(delivery.type),
            self.names.dead_queue(queue), reason, printable(error.message),
            extra={
                "task_id": printable(delivery.message_id),
                "task_name": printable(delivery.type),
                "queue": queue,
                "attempt": envelope.attempt if envelope is not None else None,
            },
        )  # fmt: skip

    async def give_back(self, delivery: Delivery, why: str) -> None:
        """Return a delivery to its queue unfinished (reject with requeue)."""
        self.counters.requeued += 1
        try:
            await delivery.reject(requeue=True)
        except Exception as exc:
            log.warning(
                "could not requeue %s (%s); the broker will redeliver it: %r",
                delivery.message_id, why, exc,
            )  # fmt: skip

    # -- logs and counters -------------------------------------------------------------------

    def _finished(
        self,
        envelope: Envelope,
        runtime: float,
        what: str,
        error: ErrorInfo | None = None,
    ) -> None:
        if error is None:
            self.counters.succeeded += 1
            # DEBUG, not INFO: a line per success cost a worker as much CPU as the rest of a
            # no-op task. Failures log at WARNING and retries at INFO.
            self._log(envelope, runtime, what, logging.DEBUG)
        else:
            self.counters.failed += 1
            self._log(envelope, runtime, f"{what}: {error.type}: {error.message}", logging.WARNING)

    def _log(self, envelope: Envelope, runtime: float, what: str, level: int) -> None:
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "task %s[%s] %s (queue=%s attempt=%d, ran %.3f s)",
            envelope.task_name, envelope.task_id, what, envelope.queue, envelope.attempt,
            runtime,
            extra={
                "task_id": envelope.task_id,
                "task_name": envelope.task_name,
                "queue": envelope.queue,
                "attempt": envelope.attempt,
                "duration": round(runtime, 6),
            },
        )  # fmt: skip
