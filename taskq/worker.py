"""The worker: consume an App's queues and run each delivery through decide, then act.

delivery -> :mod:`taskq.execution` (decode, checks, run: an Outcome) -> :mod:`taskq.actions`
(record, publish where needed, ack). Every delivery ends in exactly one recorded place (a
result, a delay level, the dead-letter queue, or back in its queue) before it is acked.

``concurrency`` runner tasks, owned by the worker's TaskGroup, take deliveries from an inbox
that the consumer callback fills (what is waiting there is "reserved"). Tasks never run inside
aiormq's consumer callback: aiormq cancels callbacks still running when their channel closes,
and a dropped connection must not interrupt a task mid-way. A task whose channel died while it
ran still finishes and records its outcome; its ack then fails and the broker redelivers it,
so it runs again (at-least-once; a durable result store skips it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Sequence

from . import control, events
from . import outcome as oc
from .actions import Actions
from .app import App
from .execution import ActiveTask, Executor
from .message import Envelope
from .results.base import ResultStore
from .transport import Delivery, Transport

log = logging.getLogger("taskq.worker")

# RabbitMQ's default consumer_timeout (30 min on 3.10): a delivery held unacked longer closes
# the channel. A task allowed to run longer would be redelivered while it still runs.
BROKER_CONSUMER_TIMEOUT = 1800.0


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
        self.counters = Counters()
        self.events = events.WorkerEvents(self.name, publish=settings.events)
        self.started_at = time.time()
        self.transport: Transport
        self.store: ResultStore
        self.actions = Actions(self)
        self.executor = Executor(self, self.actions.record)
        self.ready = asyncio.Event()
        """Set once the worker consumes its queues."""
        self._inbox: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._runners: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopping = False

    @property
    def active(self) -> dict[str, ActiveTask]:
        """The tasks running now, by task ID."""
        return self.executor.active

    @property
    def reserved(self) -> int:
        """Deliveries received and waiting for a runner."""
        return self._inbox.qsize()

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
            self.executor.close()
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
            self._runners = [tg.create_task(self._runner()) for _ in range(self.concurrency)]
            cancels = [
                await transport.consume(q, self._on_delivery, prefetch=self.prefetch)
                for q in self.queues
            ]
            tg.create_task(control.serve(self, self._stop))
            log.info(
                "worker %s consuming %s (concurrency %d) from %s",
                self.name, ",".join(self.queues), self.concurrency,
                self.app.settings.redacted_broker(),
            )  # fmt: skip
            self.ready.set()
            await self._stop.wait()
            self._stopping = True
            for cancel in cancels:
                await cancel()
            await self._drain()

    async def _drain(self) -> None:
        """Let running tasks finish within the shutdown timeout (or until a forced stop), and
        give back what never started; then cancel what still runs (it goes back to its queue)."""
        for _ in self._runners:
            self._inbox.put_nowait(None)  # after every delivery already received
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
                await self.actions.give_back(leftover, "the worker is stopping")

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
        self.events.reserve(delivery)
        self._inbox.put_nowait(delivery)

    async def _runner(self) -> None:
        inbox = self._inbox
        while (delivery := await inbox.get()) is not None:
            self.events.unreserve(delivery)
            await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            self.counters.received += 1
            envelope: Envelope | None = None
            outcome: oc.Outcome = oc.Requeue()
            if not self._stopping:
                envelope, outcome = await self.executor.decide(delivery)
            await self.actions.act(delivery, envelope, outcome)
        except asyncio.CancelledError:
            await self.actions.give_back(delivery, "the worker is stopping")
            raise
        except Exception:
            log.exception("unexpected error handling a delivery; returning it to the queue")
            await self.actions.give_back(delivery, "unexpected worker error")


def _queues_of(app: App) -> list[str]:
    queues = {app.settings.default_queue}
    queues.update(task.config.queue for task in app.tasks.values())
    return sorted(queues)


__all__ = ["ActiveTask", "Counters", "Worker"]
