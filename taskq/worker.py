"""The worker: consume an App's queues and run each delivery through decide, then act.

delivery -> :mod:`taskq.execution` (decode, checks, run: an Outcome) -> :mod:`taskq.actions`
(record, publish where needed, ack). Every delivery ends in exactly one recorded place (a
result, a delay level, the dead-letter queue, or back in its queue) before it is acked.

``concurrency`` runner tasks, owned by the worker's TaskGroup, take deliveries from an inbox
that the consumer callbacks fill (what is waiting there is "reserved"). Tasks never run inside
a consumer callback: a dropped connection must not interrupt a task mid-way. A task whose
channel died while it ran still finishes and records its outcome; its ack then fails and the
broker redelivers it, so it runs again (at-least-once; a durable result store skips it).

The parts that do the work (Recorder, Executor, Actions, the control responder) are built
once the worker is connected, from what each needs; none of them holds the worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import control, events
from . import outcome as oc
from .actions import Actions, Counters
from .app import App
from .cancel import Revoker
from .exceptions import ConfigurationError, LifecycleError
from .execution import ActiveTask, Executor
from .holding import Holder, Inbox, decode_ahead
from .hooks import Hook, Hooks
from .limits.changes import follow_changes
from .limits.gate import Gate
from .pool import ProcessPool, app_spec_of
from .recorder import Recorder
from .registry import queues_of
from .results.base import ResultStore
from .sending import Sender
from .task import Task
from .topology import check_amqp_name, routes
from .transport import Delivery, Transport
from .workflow.runner import Continuation

log = logging.getLogger("taskq.worker")

# RabbitMQ's default consumer_timeout (30 min on 3.10): a delivery held unacked longer closes
# the channel. A task allowed to run longer would be redelivered while it still runs.
BROKER_CONSUMER_TIMEOUT = 1800.0


class WorkerState(enum.StrEnum):
    """Where a Worker is in its life: NEW -> STARTING -> RUNNING -> STOPPING -> STOPPED."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True, slots=True)
class _Parts:
    """What a running worker is made of, built once it is connected."""

    transport: Transport
    actions: Actions
    executor: Executor
    revoker: Revoker


class Worker:
    """Consumes an App's queues and runs its tasks until ``stop()``.

    ``run()`` may be called once. Every other method and property works in every state:
    before ``run()`` there is simply nothing active, reserved or connected yet.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        shutdown_timeout: float | None = None,
        name: str | None = None,
        app_spec: str | None = None,
        process_init: Callable[[App], None] | None = None,
    ) -> None:
        self.app = app
        self.app_spec = app_spec
        """``module:attr`` where pool processes import the App (None: found from the
        modules of its tasks, see :func:`taskq.pool.app_spec_of`)."""
        self.process_init = process_init
        """Runs in each pool process once it has imported the App (process-init hooks)."""
        settings = app.settings
        self.queues = list(dict.fromkeys(queues)) if queues else queues_of(app)
        self.concurrency = concurrency or settings.concurrency
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        self.prefetch = settings.prefetch or self.concurrency
        """Unacked deliveries held at most per consumed queue (a partitioned queue shares it
        out: ceil(prefetch / k) per partition)."""
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        self.name = name or _default_name(app.name)
        check_amqp_name(app.names.prefix + ".control." + self.name, "worker name")
        self.counters = Counters()
        self._own_hooks: list[Hook] = []
        self.hooks = Hooks(app.hooks)
        """The worker's hooks: the App's (with its entry point hooks once ``run()`` starts),
        then the worker's own (``add_hook``)."""
        self.events = events.WorkerEvents(self.name, app.tasks) if settings.events else None
        """The event publisher (a hook), when events are on."""
        if self.events is not None:
            self.add_hook(self.events)
        self._reserved: dict[int, Delivery] = {}
        self.started_at = time.time()
        self.ready = asyncio.Event()
        """Set once the worker consumes its queues."""
        self._state = WorkerState.NEW
        self._active: dict[str, ActiveTask] = {}
        self._parts: _Parts | None = None
        self._inbox: Inbox[Delivery | None] = Inbox(max(1, self.concurrency // 2))
        self.holder = Holder(self._on_due, prepare=decode_ahead)
        """Delayed deliveries held until their due time (taskq.delays)."""
        self._runners: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._force = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self._state.value} queues={','.join(self.queues)}>"

    def add_hook(self, hook: Hook) -> None:
        """Add a hook to this worker only (after the App's hooks); it applies at once."""
        self._own_hooks.append(hook)
        self.hooks.add(hook)

    # -- observation (every state) -----------------------------------------------------------

    @property
    def state(self) -> WorkerState:
        """Where the worker is in its life."""
        return self._state

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The tasks this worker's App has, by name."""
        return self.app.tasks

    @property
    def active(self) -> dict[str, ActiveTask]:
        """The tasks running now, by task ID."""
        return self._active

    @property
    def reserved(self) -> int:
        """Deliveries received and waiting for a runner."""
        return len(self._reserved)

    def reserved_deliveries(self) -> list[Delivery]:
        """The deliveries received and waiting for a runner."""
        return list(self._reserved.values())

    def held_deliveries(self) -> list[tuple[float, Delivery]]:
        """``(due time, delivery)`` of the delayed deliveries held until due, soonest first."""
        return self.holder.held()

    @property
    def task_threads(self) -> int:
        """Threads running a plain ``def`` task now. Python cannot stop a thread: one whose
        task timed out, or that still ran when the worker stopped (its delivery was given
        back), runs on until its function returns, even after ``run()`` has returned.
        ``taskq-worker`` exits without waiting for them (exit code 5)."""
        return 0 if self._parts is None else self._parts.executor.busy_threads

    @property
    def connected(self) -> bool:
        """Whether the worker's broker connections are up now."""
        return self._parts is not None and self._parts.transport.connected

    def stats(self) -> dict[str, Any]:
        """Who the worker is, what it has done, and how busy it is."""
        counters = dataclasses.asdict(self.counters)
        done = counters["succeeded"] + counters["failed"] + counters["retried"]
        return {
            "worker": self.name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "state": self._state.value,
            "uptime": round(time.time() - self.started_at, 1),
            "queues": self.queues,
            "concurrency": self.concurrency,
            "prefetch": self.prefetch,
            "prefetch_total": sum(share * len(each) for each, share in self._consumed()),
            "processed": done,
            **counters,
            "active": len(self._active),
            "reserved": self.reserved,
            "held": len(self.holder),
            "load": round(len(self._active) / self.concurrency, 3),
            "broker_connected": self.connected,
            "events": self.events is not None,
            "events_dropped": 0 if self.events is None else self.events.dropped,
            "hook_errors": self.hook_errors,
        }

    @property
    def hook_errors(self) -> int:
        """Exceptions raised by hooks in this worker (its own, and its App's send hooks)."""
        return self.hooks.errors + self.app.hooks.errors

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful stop; a second call forces it (running tasks are requeued now).

        Before ``run()``, a stop makes ``run()`` return as soon as it has connected.
        """
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop has been asked for."""
        return self._stop.is_set()

    async def run(self) -> None:
        """Connect, declare the topology, consume until stopped, drain, close.

        Raises the error that stopped it: BrokerUnavailable if the broker cannot be reached,
        ConfigurationError if another worker of this name runs on the broker, TopologyMismatch
        if a queue exists with other arguments (an ExceptionGroup if several errors stopped
        it at once). The worker has its own connections. If its App is not open, the worker
        lends them to the App for the run, so that tasks can send tasks. LifecycleError on a
        second call.
        """
        if self._state is not WorkerState.NEW:
            raise LifecycleError(f"worker {self.name} already ran: a Worker runs once")
        self._state = WorkerState.STARTING
        self._warn_long_timeouts()
        try:
            self.app.load_entry_point_hooks()
            self.hooks.replace([*self.app.hooks, *self._own_hooks])
            self.hooks.process_init()
            transport, store = await self.app.connect(
                f"taskq-worker:{self.name}", concurrency=self.concurrency
            )
        except BaseException:
            self._state = WorkerState.STOPPED
            raise
        lent = not self.app.is_open
        if lent:
            self.app.attach(transport, store)
        recorder = Recorder(store, self.name)
        try:
            pool = await self._start_pool()
        except BaseException:
            await self._close(transport, store, lent)
            raise
        sender = Sender.over(transport, store, self.app.settings, self.hooks)  # workflow steps
        workflow = Continuation(
            sender=sender, store=store, settings=self.app.settings, recorder=recorder
        )
        revoker = Revoker(self.app.names, self.app.settings.revocation_expiry)
        gate = Gate(transport, self.app.names, self.app.tasks)
        executor = Executor(
            tasks=self.app.tasks,
            settings=self.app.settings,
            default_retry=self.app.default_retry,
            recorder=recorder,
            hooks=self.hooks,
            active=self._active,
            stopping=lambda: self._state is WorkerState.STOPPING,
            pool=pool,
            may_run=workflow.may_run,
            cancels=revoker,
            gate=gate,
        )
        actions = Actions(
            sender=sender,
            names=self.app.names,
            recorder=recorder,
            counters=self.counters,
            hooks=self.hooks,
            worker=self.name,
            workflow=workflow,
        )
        self._parts = _Parts(transport, actions, executor, revoker)
        try:
            await self._consume_until_stopped(self._parts)
        except ExceptionGroup as group:
            # The TaskGroup wraps what stopped the worker: one error is raised as itself (a
            # name in use is a ConfigurationError, not a group of one).
            sole = group.exceptions[0]
            if len(group.exceptions) == 1 and not isinstance(sole, ExceptionGroup):
                raise sole from None
            raise
        finally:
            executor.close()
            if pool is not None:
                await pool.close()
            await self._close(transport, store, lent)
            log.info("worker %s stopped", self.name)

    async def _close(self, transport: Transport, store: ResultStore, lent: bool) -> None:
        if lent:
            self.app.detach()
        await store.close()
        await transport.close()
        self._state = WorkerState.STOPPED

    async def _start_pool(self) -> ProcessPool | None:
        """The process pool, started, if some task of the App runs in processes."""
        settings = self.app.settings
        if not any(t.config.runs_in_process(settings.sync_pool) for t in self.app.tasks.values()):
            return None
        memory = settings.max_memory_per_child
        pool = ProcessPool(
            self.app_spec or app_spec_of(self.app),
            settings.sync_workers or os.cpu_count() or 1,
            max_tasks=settings.max_tasks_per_child,
            max_memory_kib=None if memory is None else memory * 1024,
            initializer=self.process_init,
            stopping=lambda: self._state is WorkerState.STOPPING,
        )
        await pool.start()
        log.info("process pool of %d started (%s)", pool.size, " ".join(map(str, pool.pids)))
        return pool

    async def _consume_until_stopped(self, parts: _Parts) -> None:
        transport = parts.transport
        for queue in self.queues:
            await transport.declare_work_queue(queue)
        await self.hooks.notify(self.hooks.on_worker_start, self)
        async with asyncio.TaskGroup() as tg:
            self._runners = [tg.create_task(self._runner(parts)) for _ in range(self.concurrency)]
            # The control queue first: it claims the worker's name (exclusive) before any
            # delivery arrives, so a second worker of the same name fails without taking any.
            await control.serve(
                self, transport, self.app.names, {"revoke": parts.revoker.on_control}
            )
            # Every cancel made so far is known before the first delivery is decided.
            await parts.revoker.start(transport, self.app.settings.publish_timeout)
            if parts.executor.gate is not None:  # limits changed at runtime (taskq.limits)
                await follow_changes(transport, self.app.names, parts.executor.gate,
                                     self.app.settings.publish_timeout)  # fmt: skip
            cancels = [
                await transport.consume(route, self._on_delivery, prefetch=prefetch)
                for each, prefetch in self._consumed()
                for route in each
            ]
            # Held deliveries wait for their time, not for a runner: no prefetch limit.
            cancels += [
                await transport.consume(route, self.holder.on_delivery, prefetch=0, held=True)
                for each, _ in self._consumed()
                for route in each
            ]
            if self.events is not None:
                tg.create_task(
                    self.events.run(
                        transport,
                        self._stop,
                        idle=lambda: not self._active and not self._reserved,
                        stats=self.stats,
                    )
                )
            self._state = WorkerState.RUNNING
            log.info(
                "worker %s consuming %s (concurrency %d, prefetch %d per queue) from %s",
                self.name, ",".join(self.queues), self.concurrency, self.prefetch,
                self.app.settings.redacted_broker(),
            )  # fmt: skip
            self.ready.set()
            await self._stop.wait()
            self._state = WorkerState.STOPPING
            for cancel in cancels:
                await cancel()
            await self._drain(parts)
            await self.hooks.notify(self.hooks.on_worker_stop, self)
        await control.depart(transport, self.app.names, self.name)  # a stop, not a crash

    def _consumed(self) -> list[tuple[list[str], int]]:
        """``(routes, prefetch of each)`` per queue: every partition of a partitioned queue is
        consumed, each on a channel of its own with its share of the queue's prefetch."""
        consumed = []
        for queue in self.queues:
            count = self.app.settings.partitions_of(queue)
            consumed.append((routes(queue, count), -(-self.prefetch // count)))
        return consumed

    async def _drain(self, parts: _Parts) -> None:
        """Let running tasks finish within the shutdown timeout (or until a forced stop), and
        give back what never started; then cancel what still runs (it goes back to its queue)."""
        held = self.holder.release_all()  # not due yet: back to their hold queues, at the end
        for _ in self._runners:
            self._inbox.put_due(None)  # after every delivery already received or come due
        running = [runner for runner in self._runners if not runner.done()]
        if running and not self._force.is_set():
            log.info("waiting up to %.1f s for running tasks", self.shutdown_timeout)
            finished = asyncio.ensure_future(asyncio.wait(running))
            forced = asyncio.ensure_future(self._force.wait())
            await asyncio.wait(
                {finished, forced},
                timeout=self.shutdown_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            finished.cancel()
            forced.cancel()
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        while not self._inbox.empty():
            leftover = self._inbox.get_nowait()
            if leftover is not None:
                self._reserved.pop(id(leftover), None)
                await parts.actions.give_back(leftover, "the worker is stopping")
        for delivery in held:
            await parts.actions.give_back(delivery, "the worker is stopping")

    def _warn_long_timeouts(self) -> None:
        for task in self.app.tasks.values():
            timeout = task.config.timeout or self.app.settings.task_timeout
            if timeout is not None and timeout > BROKER_CONSUMER_TIMEOUT:
                log.warning(
                    "task %s has a timeout of %.0f s, longer than RabbitMQ's default "
                    "consumer_timeout (%.0f s): raise consumer_timeout or the task will be "
                    "redelivered while it runs",
                    task.name, timeout, BROKER_CONSUMER_TIMEOUT,
                )  # fmt: skip

    # -- per delivery ------------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        self._reserved[id(delivery)] = delivery
        if self.hooks.on_received:
            self.hooks.notify_sync(self.hooks.on_received, delivery)
        self._inbox.put_nowait(delivery)

    def _on_due(self, delivery: Delivery) -> None:
        """A held delivery came due: to the runners, after the fresh ones waiting."""
        self._reserved[id(delivery)] = delivery
        if self.hooks.on_received:
            self.hooks.notify_sync(self.hooks.on_received, delivery)
        self._inbox.put_due(delivery)

    async def _runner(self, parts: _Parts) -> None:
        inbox, reserved = self._inbox, self._reserved
        while (delivery := await inbox.get()) is not None:
            reserved.pop(id(delivery), None)
            if delivery.stale:  # its channel closed before it started: the broker has it
                inbox.finished(delivery)
                continue
            try:
                await self._handle(parts, delivery)
            finally:
                inbox.finished(delivery)

    async def _handle(self, parts: _Parts, delivery: Delivery) -> None:
        try:
            self.counters.received += 1
            decision = oc.Decision(None, oc.Requeue())
            if self._state is not WorkerState.STOPPING:
                decision = await parts.executor.decide(delivery)
            await parts.actions.act(delivery, decision)
            parts.revoker.settled(delivery.message_id)
        except asyncio.CancelledError:
            await parts.actions.give_back(delivery, "the worker is stopping")
            raise
        except Exception:
            log.exception("unexpected error handling a delivery; returning it to the queue")
            await parts.actions.give_back(delivery, "unexpected worker error")


__all__ = ["ActiveTask", "Counters", "Worker", "WorkerState"]


_default_names = itertools.count(1)


def _default_name(app_name: str) -> str:
    """``app@host.pid``; from the second Worker of this process on, ``app@host.pid-N``: two
    workers must not share a name (it is their exclusive control queue)."""
    number = next(_default_names)
    base = f"{app_name}@{socket.gethostname()}.{os.getpid()}"
    return base if number == 1 else f"{base}-{number}"
