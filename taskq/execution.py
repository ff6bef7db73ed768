"""Decide: what becomes of one delivery (decode, checks, run the task) as an Outcome.

delivery -> decode -> crash-loop and expiry checks -> look up -> validate -> (skip if a
durable store shows SUCCESS) -> STARTED -> run under timeout -> Outcome. Nothing here talks to
the broker except through the Recorder; turning the Outcome into broker actions is
:mod:`taskq.actions`' job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, MutableMapping
from typing import Any

from . import outcome as oc
from .cancel.scope import Cancels, RunScope, root_of
from .context import TaskContext, current, reset_current, set_current
from .exceptions import (
    DecodeError,
    InvalidArguments,
    PoolProcessDied,
    TaskHardTimeout,
    TaskTimeout,
)
from .hooks import Hooks, TaskRun, is_hook_header
from .limits.gate import Gate, Limits
from .message import Envelope, envelope_of
from .pool import Job, ProcessPool
from .recorder import Recorder
from .results.base import ErrorInfo, TaskStatus
from .retry import RetryPolicy
from .settings import Settings
from .task import Task
from .transport import Delivery

log = logging.getLogger("taskq.worker")

# STARTED is recorded only for a task still running after this long: most tasks finish
# sooner, and then cost one write (the outcome) instead of two, or one reply instead of two.
STARTED_AFTER = 0.05


def may_repeat(envelope: Envelope) -> bool:
    """Whether a durable store must be asked if this task already succeeded: the message may
    repeat one that ran (an explicit or resent task ID, a redelivery, a later attempt). A
    fresh taskq-made ID, published once, cannot have run before."""
    return envelope.dedupe or envelope.deliveries > 0 or envelope.attempt > 1


@dataclasses.dataclass(slots=True)
class ActiveTask:
    """A task running now (what `inspect active` shows)."""

    task_id: str
    task_name: str
    queue: str
    attempt: int
    args: list[Any]
    kwargs: dict[str, Any]
    started_at: float
    parent_id: str | None = None
    root_id: str | None = None
    workflow: Mapping[str, Any] | None = None
    """The envelope's workflow map (what `inspect active` shows of the task's position)."""


class Executor:
    """Runs deliveries for one worker and says what became of each."""

    def __init__(
        self,
        *,
        tasks: Mapping[str, Task[Any, Any]],
        settings: Settings,
        default_retry: RetryPolicy | None,
        recorder: Recorder,
        hooks: Hooks,
        active: MutableMapping[str, ActiveTask],
        stopping: Callable[[], bool],
        pool: ProcessPool | None = None,
        may_run: Callable[[Envelope], Awaitable[bool]] | None = None,
        cancels: Cancels | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.may_run = may_run
        """Whether a workflow step may run (False: another publish of it claimed it)."""
        self.tasks = tasks
        self.settings = settings
        self.default_retry = default_retry
        self.recorder = recorder
        self.hooks = hooks
        self.active = active
        """The tasks running now, by ID (owned by the worker, filled here)."""
        self.stopping = stopping
        self.pool = pool
        """Runs the plain ``def`` tasks that run in processes (None: the worker has none)."""
        self.cancels = cancels
        """The cancels in force, and where a cancel of a running task goes (None: none)."""
        self.gate = gate
        """Admits the starts of tasks with a limit (None: limits are not enforced)."""
        self._notices: set[asyncio.Future[None]] = set()
        self.threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.threads, thread_name_prefix="taskq-task"
        )
        self._busy_threads = 0
        self._busy_lock = threading.Lock()

    @property
    def busy_threads(self) -> int:
        """Threads running a plain ``def`` task's function now, including one whose task timed
        out or was given back: a thread cannot be stopped, it runs until the function returns."""
        return self._busy_threads

    async def decide(self, delivery: Delivery) -> oc.Decision:
        """What became of ``delivery`` (with its envelope, if it could be decoded: decoded
        already if it was held, see taskq.holding)."""
        envelope: Envelope | None = delivery.decoded
        if envelope is None:
            try:
                envelope = envelope_of(delivery)
            except DecodeError as exc:
                return oc.Decision(None, oc.DeadLetter(oc.INVALID_MESSAGE, oc.error_info(exc)))
        if self.cancels is not None:
            reason = self.cancels.revoked(envelope.task_id, root_of(envelope))
            if reason is not None:  # never run, whatever else is wrong with it
                return oc.Decision(envelope, oc.Cancelled(reason))
        if delivery.redelivered:
            return oc.Decision(envelope, self._redelivered(envelope))
        if envelope.expires is not None and envelope.expires < dt.datetime.now(dt.UTC):
            expired = ErrorInfo("taskq.Expired", f"not started before {envelope.expires}")
            return oc.Decision(envelope, oc.DeadLetter(oc.EXPIRED, expired))
        task = self.tasks.get(envelope.task_name)
        if task is None:
            unknown = ErrorInfo(
                "taskq.UnknownTask", f"no task named {envelope.task_name!r} in this worker"
            )
            return oc.Decision(envelope, oc.DeadLetter(oc.UNKNOWN_TASK, unknown))
        try:
            args, kwargs = task.signature.validate(envelope.args, envelope.kwargs)
        except InvalidArguments as exc:
            return oc.Decision(envelope, oc.DeadLetter(oc.INVALID_ARGS, oc.error_info(exc)))
        gate = self.gate
        limits = None if gate is None else gate.limited.get(task.name)
        if gate is None or limits is None:  # no limit (the usual case): one dict lookup
            return await self._run(task, envelope, args, kwargs)
        return await self._limited(gate, limits, task, envelope, args, kwargs)

    def _redelivered(self, envelope: Envelope) -> oc.Outcome:
        # The last holder died before acking: count it, so that a message that kills workers
        # is caught instead of killing them forever.
        deliveries = envelope.deliveries + 1
        if deliveries >= self.settings.max_deliveries:
            return oc.DeadLetter(
                oc.CRASH_LOOP,
                ErrorInfo("taskq.CrashLoop", f"delivered {deliveries} times without finishing"),
            )
        return oc.CountRedelivery(deliveries)

    async def _limited(
        self,
        gate: Gate,
        limits: Limits,
        task: Task[Any, Any],
        envelope: Envelope,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> oc.Decision:
        """Run a task with a limit in force once its limits let it start, else defer it."""
        try:
            admitted = await gate.admit(task, limits, (args, kwargs))
        except InvalidArguments as exc:  # its concurrency_key failed on these arguments
            return oc.Decision(envelope, oc.DeadLetter(oc.INVALID_ARGS, oc.error_info(exc)))
        if isinstance(admitted, float):  # a rate or concurrency limit defers it
            return oc.Decision(envelope, oc.Defer(admitted))
        try:
            return await self._run(task, envelope, args, kwargs)
        finally:
            if admitted is not None:
                await gate.slots.release(admitted)

    async def _run(
        self,
        task: Task[Any, Any],
        envelope: Envelope,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> oc.Decision:
        """Run a valid delivery (unless held back for another reason)."""
        held_back = await self._held_back(task, envelope)
        if held_back is not None:
            return oc.Decision(envelope, held_back)
        recorder = self.recorder
        started = None
        if recorder.wanted(envelope):
            started = DeferredStarted(
                lambda: recorder.record(envelope, TaskStatus.STARTED), self._notices
            )
        self.active[envelope.task_id] = ActiveTask(
            envelope.task_id, envelope.task_name, envelope.queue, envelope.attempt,
            envelope.args, envelope.kwargs, time.time(), envelope.parent_id, envelope.root_id,
            envelope.workflow,
        )  # fmt: skip
        scope = RunScope(envelope.task_id, root_of(envelope))
        ctx = self._context(envelope, started, scope)
        token = set_current(ctx)
        if self.cancels is not None:
            self.cancels.running(scope)
        try:
            if self.hooks.before_run or self.hooks.after_run:
                outcome, runtime, envelope = await self._timed(
                    task, envelope, args, kwargs, ctx, scope
                )
            else:  # no hooks (the usual case): no TaskRun, no extra coroutine
                began = time.monotonic()
                outcome = await self._cancellable(
                    task, scope, self._outcome(task, envelope, args, kwargs, None)
                )
                runtime = time.monotonic() - began
        finally:
            if self.cancels is not None:
                self.cancels.ended(scope)
            reset_current(token)
            self.active.pop(envelope.task_id, None)
            if started is not None:
                started.cancel()
        return oc.Decision(envelope, outcome, runtime)

    async def _held_back(self, task: Task[Any, Any], envelope: Envelope) -> oc.Outcome | None:
        """Why a valid delivery does not run now (None: it runs): another publish of the same
        workflow step claimed it, or it succeeded before."""
        if envelope.workflow and self.may_run is not None and not await self.may_run(envelope):
            return oc.Skip(duplicate=True)
        if may_repeat(envelope) and await self.recorder.succeeded_before(envelope):
            return oc.Skip()
        return None

    async def _timed(
        self,
        task: Task[Any, Any],
        envelope: Envelope,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: TaskContext,
        scope: RunScope,
    ) -> tuple[oc.Outcome, float, Envelope]:
        """Run the task's function between the ``before_run`` and ``after_run`` hooks: its
        Outcome, for how many seconds it ran (the hooks' time not counted), and the envelope
        with the hooks' ``next_headers`` (what a retry sends)."""
        hooks = self.hooks
        run = TaskRun(envelope, ctx)
        await hooks.notify(hooks.before_run, run)
        began = time.monotonic()
        try:
            outcome = await self._cancellable(
                task, scope, self._outcome(task, envelope, args, kwargs, run)
            )
        finally:
            run.runtime = runtime = time.monotonic() - began
            await hooks.notify(hooks.after_run, run)
        added = {k: v for k, v in run.next_headers.items() if is_hook_header(k)}
        if added:
            envelope = dataclasses.replace(envelope, headers={**envelope.headers, **added})
        return outcome, runtime, envelope

    def _in_pool(self, task: Task[Any, Any]) -> bool:
        return self.pool is not None and task.config.runs_in_process(self.settings.sync_pool)

    async def _cancellable(
        self, task: Task[Any, Any], scope: RunScope, run: Coroutine[Any, Any, oc.Outcome]
    ) -> oc.Outcome:
        """The Outcome of ``run`` (the task's function), or Cancelled if a cancel reached the
        run before it ended (see taskq.cancel.scope), whatever the function did."""
        if scope.reason is not None:  # cancelled while it was being set up
            run.close()
            return oc.Cancelled(scope.reason)
        # An async task, or the wait for a pool process (a cancel kills the process), can be
        # interrupted; a thread cannot: it has to check taskq.current().cancelled.
        scope.enter(task.config.is_async or self._in_pool(task))
        try:
            outcome = await run
        except asyncio.CancelledError:
            scope.leave()
            if scope.absorb():
                return oc.Cancelled(scope.reason or "")
            raise
        scope.leave()
        return oc.Cancelled(scope.reason or "") if scope.absorb() else outcome

    async def _outcome(
        self,
        task: Task[Any, Any],
        envelope: Envelope,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run: TaskRun | None,
    ) -> oc.Outcome:
        """Run the task's function: what it returned or raised, as an Outcome (told to
        ``run`` too, for the ``after_run`` hooks)."""
        policy = task.config.retry or self.default_retry
        if self.pool is not None and self._in_pool(task):
            return await self._in_process(self.pool, task, envelope, policy)
        try:
            value = await self._call(task, args, kwargs)
        except Exception as exc:
            if run is not None:
                run.exception = exc
            return oc.from_exception(exc, envelope.attempt, policy)
        except asyncio.CancelledError as exc:
            if run is not None:
                run.exception = exc
            current = asyncio.current_task()
            if self.stopping() or (current is not None and current.cancelling()):
                raise  # the worker is stopping: the delivery goes back to its queue
            # The task's own code raised CancelledError (e.g. an inner operation was
            # cancelled): that is the task failing, not the worker stopping.
            error = RuntimeError(f"task raised CancelledError: {exc}")
            return oc.from_exception(error, envelope.attempt, policy)
        if run is not None:
            run.result = value
        return oc.Succeeded(value)

    async def _in_process(
        self,
        pool: ProcessPool,
        task: Task[Any, Any],
        envelope: Envelope,
        policy: RetryPolicy | None,
    ) -> oc.Outcome:
        """Run the task in a pool child, which decides its Outcome (it has the App, so the
        retry policy's exception types); a hard timeout follows the policy too, and a child
        that died counts as a redelivery (the crash-loop rule)."""
        job = Job(
            task.name, envelope.args, envelope.kwargs, envelope.attempt, envelope.task_id,
            envelope.queue, envelope.root_id, envelope.scheduled_for, envelope.partition,
            task.config.timeout or self.settings.task_timeout,
        )  # fmt: skip
        try:
            return await pool.run(job, task.config.hard_timeout, current().progress)
        except TaskHardTimeout as exc:
            outcome = oc.from_exception(exc, envelope.attempt, policy)
            if isinstance(outcome, oc.Failed):
                return dataclasses.replace(outcome, reason=oc.HARD_TIMEOUT)
            return outcome
        except PoolProcessDied as exc:
            log.warning("%s; it counts as a redelivery of task %s", exc, envelope.task_id)
            return self._redelivered(envelope)

    def _context(
        self, envelope: Envelope, started: DeferredStarted | None, scope: RunScope
    ) -> TaskContext:
        async def report(fraction: float, message: str | None) -> None:
            if started is not None:
                await started.settle()
            await self.recorder.record(envelope, TaskStatus.STARTED, progress=(fraction, message))

        return TaskContext(
            envelope.task_id, envelope.task_name, envelope.queue, envelope.attempt,
            envelope.root_id or envelope.task_id, report, envelope.scheduled_for,
            envelope.partition, envelope.headers, scope,
        )  # fmt: skip

    async def _call(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        timeout = task.config.timeout or self.settings.task_timeout
        if task.config.is_async:
            if timeout is None:
                return await task.func(*args, **kwargs)
            try:
                async with asyncio.timeout(timeout) as cm:
                    return await task.func(*args, **kwargs)
            except TimeoutError:
                if cm.expired():
                    raise TaskTimeout(f"task {task.name} ran longer than {timeout} s") from None
                raise
        ctx = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self.threads, lambda: self._in_thread(ctx, task.func, args, kwargs)
        )
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            # wait_for cancels the future on timeout, and exception() of a cancelled future
            # raises CancelledError (which would requeue the task as if the worker stopped).
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise
            # A thread cannot be stopped: it runs on, but its outcome no longer counts.
            raise TaskTimeout(
                f"task {task.name} ran longer than {timeout} s (its thread runs on)"
            ) from None

    def _in_thread(
        self,
        ctx: contextvars.Context,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        with self._busy_lock:
            self._busy_threads += 1
        try:
            return ctx.run(func, *args, **kwargs)
        finally:
            with self._busy_lock:
                self._busy_threads -= 1

    def close(self) -> None:
        """Stop the thread pool (threads still running a timed-out task run on)."""
        self.threads.shutdown(wait=False, cancel_futures=True)


class DeferredStarted:
    """The STARTED record of one run, made ``STARTED_AFTER`` seconds in (a task that ends
    sooner records only its outcome), and kept ahead of the run's progress reports.

    A progress report is a STARTED record with progress; a plain STARTED written after it
    (same attempt, same rank) would erase the progress, so a report first cancels the
    timer, or waits for the STARTED write already under way.
    """

    def __init__(
        self, record: Callable[[], Awaitable[None]], notices: set[asyncio.Future[None]]
    ) -> None:
        self._record = record
        self._notices = notices
        self._notice: asyncio.Future[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(STARTED_AFTER, self._fire)

    def _fire(self) -> None:
        # Best effort, like every non-terminal AMQP status: a STARTED that arrives after the
        # outcome is ignored by the receiver (statuses never move backwards).
        notice = self._notice = asyncio.ensure_future(self._record())
        self._notices.add(notice)
        notice.add_done_callback(self._notices.discard)

    def cancel(self) -> None:
        """The run ended: no STARTED record from now on."""
        self._timer.cancel()

    async def settle(self) -> None:
        """Before a progress report: no STARTED from now on, and the one sent has landed."""
        self._timer.cancel()
        if self._notice is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._notice)
