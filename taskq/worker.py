"""The worker loop: delivery -> decode -> look up -> validate -> STARTED -> run -> Outcome ->
record -> act -> ack.

Every delivery ends in exactly one recorded place (a result, a delay level, the dead-letter
queue, or back in its queue) before it is acked. Tasks run in tasks of the worker's own
TaskGroup, not inside aiormq's consumer callback: aiormq cancels callbacks still running when
their channel closes, and a dropped connection must not interrupt a task mid-way. A task whose
channel died while it ran still finishes and records its outcome; its ack then fails and the
broker redelivers it, so it runs again (at-least-once; a durable result store skips it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from . import control, events
from . import outcome as oc
from .app import App
from .context import TaskContext, reset_current, set_current
from .exceptions import (
    DecodeError,
    EncodeError,
    InvalidArguments,
    ResultUnavailable,
    TaskqError,
    TaskTimeout,
)
from .message import (
    H_DEAD_AT,
    H_DELIVERIES,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_REASON,
    H_TRACEBACK,
    H_WORKER,
    Envelope,
    decode_envelope,
    truncate,
)
from .results.base import ErrorInfo, ResultStore, TaskState, TaskStatus
from .task import Task
from .topology import MAX_DELAY_MS, delay_routing_key
from .transport import Delivery, Transport

log = logging.getLogger("taskq.worker")
T = TypeVar("T")

# RabbitMQ's default consumer_timeout (30 min on 3.10): a delivery held unacked longer closes
# the channel. A task allowed to run longer would be redelivered while it still runs.
BROKER_CONSUMER_TIMEOUT = 1800.0


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


@dataclasses.dataclass(slots=True)
class Counters:
    """What this worker has done since it started."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0


class Worker:
    """Consumes an App's queues and runs its tasks until ``stop()``."""

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        shutdown_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        self.app = app
        settings = app.settings
        self.queues = list(queues) if queues else _queues_of(app)
        self.concurrency = concurrency or settings.concurrency
        self.prefetch = settings.prefetch or self.concurrency
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self.name = name or f"{app.name}@{socket.gethostname()}.{os.getpid()}"
        self.active: dict[str, ActiveTask] = {}
        self.reserved = 0
        self.counters = Counters()
        self.events = events.WorkerEvents(self.name, publish=settings.events)
        self.started_at = time.time()
        self._slots = asyncio.Semaphore(self.concurrency)
        self.transport: Transport
        self.store: ResultStore
        self.ready = asyncio.Event()
        """Set once the worker consumes its queues."""
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = False
        self._running: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.threads, thread_name_prefix="taskq-task"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful stop; a second call forces it (running tasks are requeued now)."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop has been asked for."""
        return self._stop.is_set()

    async def run(self) -> None:
        """Connect, declare the topology, consume until stopped, drain, close.

        The worker has its own connections. If its App is not open, the worker lends them to
        the App for the run, so that tasks can send tasks.
        """
        self._warn_long_timeouts()
        self.transport, self.store = await self.app.connect(f"taskq-worker:{self.name}")
        lent = not self.app.is_open
        if lent:
            self.app.attach(self.transport, self.store)
        try:
            await self._consume_until_stopped()
        finally:
            self._tg = None
            self._threads.shutdown(wait=False, cancel_futures=True)
            if lent:
                self.app.detach()
            await self.store.close()
            await self.transport.close()
            log.info("worker %s stopped", self.name)

    async def _consume_until_stopped(self) -> None:
        transport = self.transport
        for queue in self.queues:
            await transport.declare_work_queue(queue)
        await transport.declare_delay_levels()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            cancels = [
                await transport.consume(q, self._on_delivery, prefetch=self.prefetch)
                for q in self.queues
            ]
            tg.create_task(control.serve(self, self._stop))
            log.info(
                "worker %s consuming %s (concurrency %d) from %s",
                self.name,
                ",".join(self.queues),
                self.concurrency,
                self.app.settings.redacted_broker(),
            )
            self.ready.set()
            await self._stop.wait()
            self._stopping = True
            for cancel in cancels:
                await cancel()
            await self._drain()

    async def _drain(self) -> None:
        """Let running tasks finish within the shutdown timeout (or until a forced stop), then
        cancel the rest: each cancelled task returns its delivery to the queue."""
        running = set(self._running)
        if running and not self._force.is_set():
            log.info(
                "waiting up to %.1f s for %d running task(s)", self.shutdown_timeout, len(running)
            )
            finished = asyncio.ensure_future(asyncio.wait(running))
            forced = asyncio.ensure_future(self._force.wait())
            await asyncio.wait(
                {finished, forced},
                timeout=self.shutdown_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            finished.cancel()
            forced.cancel()
        for task in list(self._running):
            task.cancel()

    def _warn_long_timeouts(self) -> None:
        for task in self.app.tasks.values():
            timeout = task.config.timeout or self.app.settings.task_timeout
            if timeout is not None and timeout > BROKER_CONSUMER_TIMEOUT:
                log.warning(
                    "task %s has a timeout of %.0f s, longer than RabbitMQ's default "
                    "consumer_timeout (%.0f s): raise consumer_timeout or the task will be "
                    "redelivered while it runs",
                    task.name,
                    timeout,
                    BROKER_CONSUMER_TIMEOUT,
                )

    # -- per delivery ------------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        tg = self._tg
        if tg is None:
            return  # shutting down: the unacked delivery returns to the queue with the channel
        task = tg.create_task(self._handle(delivery))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            self.reserved += 1
            self.events.reserve(delivery)
            try:
                await self._slots.acquire()
            finally:
                self.reserved -= 1
                self.events.unreserve(delivery)
            try:
                self.counters.received += 1
                envelope: Envelope | None = None
                outcome: oc.Outcome = oc.Requeue()
                if not self._stopping:
                    envelope, outcome = await self._process(delivery)
                await self._act(delivery, envelope, outcome)
            finally:
                self._slots.release()
        except asyncio.CancelledError:
            await self._give_back(delivery, "the worker is stopping")
        except Exception:
            log.exception("unexpected error handling a delivery; returning it to the queue")
            await self._give_back(delivery, "unexpected worker error")

    async def _give_back(self, delivery: Delivery, why: str) -> None:
        self.counters.requeued += 1
        try:
            await delivery.reject(requeue=True)
        except Exception as exc:
            log.warning(
                "could not requeue %s (%s); the broker will redeliver it: %s",
                delivery.message_id,
                why,
                exc,
            )

    async def _process(self, delivery: Delivery) -> tuple[Envelope | None, oc.Outcome]:
        try:
            envelope = decode_envelope(
                body=delivery.body,
                content_type=delivery.content_type,
                message_id=delivery.message_id,
                task_name=delivery.type,
                headers=delivery.headers,
                priority=delivery.priority,
                reply_to=delivery.reply_to,
                queue=delivery.queue,
            )
        except DecodeError as exc:
            return None, oc.DeadLetter(oc.INVALID_MESSAGE, oc.error_info(exc))
        if delivery.redelivered:
            deliveries = envelope.deliveries + 1
            if deliveries >= self.app.settings.max_deliveries:
                return envelope, oc.DeadLetter(
                    oc.CRASH_LOOP,
                    ErrorInfo(
                        "taskq.CrashLoop", f"delivered {deliveries} times without finishing"
                    ),
                )
            return envelope, oc.CountRedelivery(deliveries)
        if envelope.expires is not None and envelope.expires < dt.datetime.now(dt.UTC):
            return envelope, oc.DeadLetter(
                oc.EXPIRED, ErrorInfo("taskq.Expired", f"not started before {envelope.expires}")
            )
        task = self.app.tasks.get(envelope.task_name)
        if task is None:
            return envelope, oc.DeadLetter(
                oc.UNKNOWN_TASK,
                ErrorInfo(
                    "taskq.UnknownTask", f"no task named {envelope.task_name!r} in this worker"
                ),
            )
        return envelope, await self._run(task, envelope)

    async def _run(self, task: Task[Any, Any], envelope: Envelope) -> oc.Outcome:
        try:
            args, kwargs = task.signature.validate(envelope.args, envelope.kwargs)
        except InvalidArguments as exc:
            return oc.DeadLetter(oc.INVALID_ARGS, oc.error_info(exc))
        store = self.store
        if store.durable:
            done = await self._until_stored(lambda: store.get(envelope.task_id))
            if done is not None and done.status is TaskStatus.SUCCESS:
                return oc.Skip()
        await self._record(envelope, TaskStatus.STARTED)
        self.active[envelope.task_id] = ActiveTask(
            envelope.task_id,
            envelope.task_name,
            envelope.queue,
            envelope.attempt,
            envelope.args,
            envelope.kwargs,
            time.time(),
        )
        self.events.started(envelope)
        ctx = TaskContext(
            envelope.task_id,
            envelope.task_name,
            envelope.queue,
            envelope.attempt,
            envelope.root_id or envelope.task_id,
            lambda fraction, message: self._record(
                envelope, TaskStatus.STARTED, progress=(fraction, message)
            ),
        )
        token = set_current(ctx)
        try:
            value = await self._call(task, args, kwargs)
        except Exception as exc:
            return oc.from_exception(
                exc, envelope.attempt, task.config.retry or self.app.default_retry
            )
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if self._stopping or (current is not None and current.cancelling()):
                raise  # the worker is stopping: the delivery goes back to its queue
            # The task's own code raised CancelledError (e.g. an inner operation was
            # cancelled): that is the task failing, not the worker stopping.
            return oc.from_exception(
                RuntimeError(f"task raised CancelledError: {exc}"), envelope.attempt,
                task.config.retry or self.app.default_retry,
            )
        finally:
            reset_current(token)
            self.active.pop(envelope.task_id, None)
        return oc.Succeeded(value)

    async def _call(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        timeout = task.config.timeout or self.app.settings.task_timeout
        if task.config.is_async:
            try:
                async with asyncio.timeout(timeout) as cm:
                    return await task.func(*args, **kwargs)
            except TimeoutError:
                if cm.expired():
                    raise TaskTimeout(f"task {task.name} ran longer than {timeout} s") from None
                raise
        ctx = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, lambda: ctx.run(task.func, *args, **kwargs)
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

    # -- outcome -> broker actions -----------------------------------------------------------

    async def _record(
        self,
        envelope: Envelope,
        status: TaskStatus,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        progress: tuple[float, str | None] | None = None,
    ) -> None:
        state = TaskState(
            task_id=envelope.task_id,
            status=status,
            task_name=envelope.task_name,
            attempt=envelope.attempt,
            result=result,
            error=error,
            worker=self.name,
            progress=progress[0] if progress else None,
            progress_message=progress[1] if progress else None,
        )
        await self._until_stored(lambda: self.store.record(state, reply_to=envelope.reply_to))

    async def _until_stored(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a store call; while the store is unreachable (ResultUnavailable), retry with
        backoff. The delivery stays unacked meanwhile; a stop cancels this and requeues it."""
        delay = 0.1
        while True:
            try:
                return await call()
            except ResultUnavailable as exc:
                log.warning("result store unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _act(
        self, delivery: Delivery, envelope: Envelope | None, outcome: oc.Outcome
    ) -> None:
        """Turn an outcome into broker actions. Every branch records, then acks last."""
        match outcome:
            case oc.Succeeded(value):
                assert envelope is not None
                try:
                    await self._record(envelope, TaskStatus.SUCCESS, result=value)
                except EncodeError as exc:
                    await self._act(delivery, envelope, oc.Failed(oc.error_info(exc)))
                    return
                self.counters.succeeded += 1
                self._log_outcome(envelope, "succeeded")
                self.events.finished("succeeded", envelope)
            case oc.Failed(error):
                assert envelope is not None
                await self._record(envelope, TaskStatus.FAILURE, error=error)
                await self._dead_letter(delivery, oc.MAX_ATTEMPTS, error)
                self.counters.failed += 1
                self._log_outcome(
                    envelope, f"failed: {error.type}: {error.message}", logging.WARNING
                )
                self.events.finished("failed", envelope, error=error.type)
            case oc.RetryLater(delay, error):
                assert envelope is not None
                await self._retry(delivery, envelope, delay, error)
            case oc.DeadLetter(reason, error):
                if envelope is not None:  # the caller learns why instead of timing out
                    await self._record(envelope, TaskStatus.FAILURE, error=error)
                await self._dead_letter(delivery, reason, error)
            case oc.CountRedelivery(deliveries):
                headers = {**delivery.headers, H_DELIVERIES: deliveries}
                await self.transport.publish(
                    self.app.names.exchange, delivery.queue, delivery.as_outgoing(headers=headers)
                )
            case oc.Requeue():
                # Never started: republish it as it came, then ack. A reject would set the
                # broker's redelivered flag, and the next worker would count a crash for a
                # task that never ran (a few restarts would dead-letter it as crash-loop).
                await self.transport.publish(
                    self.app.names.exchange, delivery.queue, delivery.as_outgoing()
                )
                self.counters.requeued += 1
            case oc.Skip():
                log.info("task %s already succeeded; not running it again", delivery.message_id)
        await self._ack(delivery)

    async def _retry(
        self, delivery: Delivery, envelope: Envelope, delay: float, error: ErrorInfo
    ) -> None:
        retried = dataclasses.replace(envelope, attempt=envelope.attempt + 1, deliveries=0)
        retrying = TaskState(
            envelope.task_id,
            TaskStatus.RETRYING,
            envelope.task_name,
            envelope.attempt,
            error=error,
            worker=self.name,
        )
        await self._until_stored(lambda: self.store.record(retrying, reply_to=envelope.reply_to))
        message = retried.to_message(None)
        delay_ms = min(MAX_DELAY_MS, int(delay * 1000))
        transport, names = self.transport, self.app.names
        if delay_ms > 0:
            await transport.publish(
                names.delay_exchange(delay_ms),
                delay_routing_key(delay_ms, envelope.queue),
                message,
            )
        else:
            await transport.publish(names.exchange, envelope.queue, message)
        self.counters.retried += 1
        self._log_outcome(
            envelope, f"retrying in {delay:.3f} s after {error.type}: {error.message}"
        )
        self.events.finished("retried", envelope, delay=delay, error=error.type)

    async def _dead_letter(self, delivery: Delivery, reason: str, error: ErrorInfo) -> None:
        headers = {
            **delivery.headers,
            H_REASON: reason,
            H_ERROR_TYPE: truncate(error.type, 500),
            H_ERROR_MESSAGE: truncate(error.message),
            H_TRACEBACK: truncate(error.traceback),
            H_WORKER: self.name,
            H_DEAD_AT: int(time.time() * 1000),
        }
        await self.transport.publish(
            self.app.names.dlx, delivery.queue, delivery.as_outgoing(headers=headers)
        )
        self.counters.dead_lettered += 1
        self.events.dead_lettered(delivery, reason)
        log.warning(
            "message %s (%s) dead-lettered to %s: %s: %s",
            delivery.message_id,
            delivery.type,
            self.app.names.dead_queue(delivery.queue),
            reason,
            error.message,
        )

    async def _ack(self, delivery: Delivery) -> None:
        try:
            await delivery.ack()
        except Exception as exc:
            log.warning(
                "ack of %s failed (%r): its channel is gone, so the broker will redeliver it",
                delivery.message_id,
                exc,
            )

    def _log_outcome(self, envelope: Envelope, what: str, level: int = logging.INFO) -> None:
        if log.isEnabledFor(level):
            duration = self.events.runtime(envelope.task_id)
            log.log(
                level,
                "task %s[%s] %s (queue=%s attempt=%d, ran %.3f s)",
                envelope.task_name,
                envelope.task_id,
                what,
                envelope.queue,
                envelope.attempt,
                duration,
                extra={
                    "task_id": envelope.task_id,
                    "task_name": envelope.task_name,
                    "queue": envelope.queue,
                    "attempt": envelope.attempt,
                    "duration": round(duration, 6),
                },
            )


def _queues_of(app: App) -> list[str]:
    queues = {app.settings.default_queue}
    queues.update(task.config.queue for task in app.tasks.values())
    return sorted(queues)


__all__ = ["ActiveTask", "Counters", "TaskqError", "Worker"]
