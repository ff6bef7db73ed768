"""One scenario run: its prefix, ledger, worker processes and client, the counting at the end,
and the cleanup of all of it whatever happens."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import tempfile
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from taskq import TaskHandle
from taskq.message import H_REASON
from tests.integration.test_result_store_contract import delete_redis_keys
from tests.support import WorkerProcess, eventually

from . import broker, observe
from .callers import Callers
from .ledger import LEDGER_ENV, Ledger, Snapshot
from .report import Row
from .tasks import register

APP = "benchmarks.faults.tasks:app"
LOGS_ENV = "TASKQ_FAULTS_LOGS"
"""A directory to keep each worker's log in (default: logs are deleted with the run)."""
log = logging.getLogger("benchmarks.faults")


class Run:
    """A scenario's world. ``async with Run(...) as run:`` opens the client (``async with
    app:``); leaving the block kills the workers, closes the client and deletes every queue,
    exchange, Redis key and file of the run's prefix."""

    def __init__(
        self,
        scenario: str,
        *,
        results: str = "amqp",
        queues: Sequence[str] = ("default",),
        concurrency: int = 8,
        client_broker: Sequence[str] = (broker.BROKER,),
        worker_broker: Sequence[str] = (broker.BROKER,),
        rabbitmqctl: Sequence[str] = broker.RABBITMQCTL,
        queue_type: str = "classic",
    ) -> None:
        """``client_broker`` and ``worker_broker`` are the URLs the client and the workers
        try, in order; ``rabbitmqctl`` the command that reaches a node of that broker (the
        backlog, cleanup). ``queue_type`` is the App setting of client and workers."""
        self.scenario = scenario
        self.prefix = f"fault{uuid.uuid4().hex[:10]}"
        self.results = results
        self.queues = list(queues)
        self.concurrency = concurrency
        self.worker_broker = ",".join(worker_broker)
        self.rabbitmqctl = tuple(rabbitmqctl)
        self.queue_type = queue_type
        self.admin_url = client_broker[0]
        """Where the suite itself connects to read and clean up (the client's first URL)."""
        self.ledger = Ledger(Path(tempfile.gettempdir()) / f"{self.prefix}.ledger")
        self.client = register(
            observe.ObservedApp(
                f"faults-{self.prefix}",
                broker=list(client_broker),
                prefix=self.prefix,
                results=results,
                queue_type=queue_type,
            )
        )
        self.callers = Callers()
        self.workers: list[WorkerProcess] = []
        self.confirmed: list[str] = []
        self.in_flight_at_faults: list[int] = []
        self.notes: list[str] = []
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Run:
        self._stack.push_async_callback(self._clean_up)
        try:
            await self._stack.enter_async_context(self.client)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(kind, exc, tb)

    async def _clean_up(self) -> None:
        await self.callers.abandon()
        keep = os.environ.get(LOGS_ENV)
        for number, worker in enumerate(self.workers):
            if keep:
                Path(keep, f"{self.prefix}-w{number}.log").write_text(worker.output())
            worker.kill()
        try:
            await broker.delete_prefix(self.prefix, self.queues, self.admin_url, self.rabbitmqctl)
            if self.results.startswith("redis"):
                try:
                    await delete_redis_keys(self.prefix, self.results)
                except (OSError, redis.RedisError) as exc:
                    log.warning("could not delete the Redis keys of %s: %s", self.prefix, exc)
        finally:
            if keep and self.ledger.path.exists():
                Path(keep, f"{self.prefix}.ledger").write_text(self.ledger.path.read_text())
            self.ledger.remove()

    # -- workers -----------------------------------------------------------------------------

    async def start_worker(self, *, ready: bool = True) -> WorkerProcess:
        """Start a ``taskq-worker`` on the run's queues and (``ready``) wait until it
        consumes."""
        worker = WorkerProcess(
            APP, self.prefix,
            "--name", f"{self.prefix}-w{len(self.workers)}",
            "--queues", ",".join(self.queues),
            "--concurrency", str(self.concurrency),
            env={"TASKQ_BROKER": self.worker_broker, "TASKQ_RESULTS": self.results,
                 "TASKQ_QUEUE_TYPE": self.queue_type, LEDGER_ENV: str(self.ledger.path)},
        )  # fmt: skip
        self.workers.append(worker)
        if ready:
            await worker.wait_ready(timeout=60)
        return worker

    def live_pids(self) -> set[int]:
        """The pids of the workers still running."""
        return {w.process.pid for w in self.workers if w.process.poll() is None}

    def fault(self) -> None:
        """Note a fault now: every live worker may hold ``concurrency`` deliveries (its
        prefetch), each of which may run again."""
        self.in_flight_at_faults.append(self.concurrency * len(self.live_pids()))

    def sigkill(self, worker: WorkerProcess) -> int:
        """SIGKILL ``worker`` (a fault); return how many tasks it was running."""
        running = len(self.ledger.read().running({worker.process.pid}))
        self.fault()
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)
        return running

    # -- sending and waiting -----------------------------------------------------------------

    async def send(self, calls: Sequence[tuple[Any, float, int]]) -> list[TaskHandle[Any]]:
        """Send ``(task or task call, seconds, tag)`` items in one confirmed batch; callers
        start awaiting each result at once."""
        handles = await self.client.send_many([(call, (s, tag)) for call, s, tag in calls])
        self.confirmed += [h.id for h in handles]
        self.callers.watch(handles, [tag for *_, tag in calls])
        return handles

    async def until(self, check: Any, what: str, timeout: float = 60) -> None:
        """Poll ``check(snapshot)`` on the ledger until it is true (a live worker must remain)."""

        async def ready() -> bool:
            if self.workers and not self.live_pids():
                raise RuntimeError(f"every worker exited:\n{self.workers[-1].output()[-2000:]}")
            return bool(check(self.ledger.read()))

        await eventually(ready, timeout=timeout, interval=0.01, what=what)

    def done(self, snapshot: Snapshot) -> int:
        """Confirmed tasks finished at least once in ``snapshot``."""
        return snapshot.count_done(self.confirmed)

    async def settle(self, timeout: float) -> bool:
        """Wait until nothing more can run: no backlog in the broker (ready or unacked) and no
        task running in a live worker, twice in a row. False at the deadline."""
        quiet = 0

        async def nothing_left() -> bool:
            nonlocal quiet
            running = self.ledger.read().running(self.live_pids())
            quiet = quiet + 1 if not running and await self.backlog() == 0 else 0
            return quiet >= 2

        try:
            await eventually(nothing_left, timeout=timeout, interval=0.1, what="quiet")
        except AssertionError:
            return False
        return True

    async def backlog(self) -> int | None:
        """Ready and unacked messages of the run (see ``broker.backlog``)."""
        return await broker.backlog(self.prefix, self.rabbitmqctl)

    # -- counting ----------------------------------------------------------------------------

    async def count(
        self, *, settle_timeout: float, grace: float, cancelled: Collection[str] = ()
    ) -> Row:
        """Settle, give callers ``grace`` seconds, and count every confirmed task: those of
        ``cancelled`` (cancels confirmed) need not run, and must not start after the cancel."""
        settled = await self.settle(settle_timeout)
        callers = await self.callers.finish(grace, cancelled)
        snapshot = self.ledger.read()
        done = snapshot.done_by_id()
        ids = self.confirmed
        skipped = set(cancelled)
        row = Row(
            self.scenario,
            "redis" if self.results.startswith("redis") else "amqp",
            confirmed=len(ids),
            executed=sum(1 for i in ids if done[i]),
            lost=sum(1 for i in ids if not done[i] and i not in skipped),
            twice=sum(1 for i in ids if done[i] > 1),
            extra_runs=sum(max(0, done[i] - 1) for i in ids),
            allowed_twice=sum(self.in_flight_at_faults),
            recorded_twice=await self._recorded_twice(),
            callers=callers.waited,
            without_result=callers.without_result if callers.waited else None,
            wrong_errors=callers.wrong if callers.waited else None,
            settled=settled,
            ran_after_cancel=len(snapshot.late & skipped),
            notes=self.notes,
            prefix=self.prefix,
            worker_pids=[w.process.pid for w in self.workers],
        )
        parked = await self._dead_lettered()
        if parked:
            row.notes.append("dead-lettered: " + ", ".join(f"{n} {r}" for r, n in parked.items()))
        if callers.wrong_examples:
            row.notes.append(f"wrong errors, e.g. {'; '.join(callers.wrong_examples)}")
        return row

    async def _dead_lettered(self) -> collections.Counter[str]:
        """Reasons of the messages in the run's ``.dead`` queues (taken out of them)."""
        reasons: collections.Counter[str] = collections.Counter()
        for queue in self.queues:
            dead = self.client.names.dead_queue(queue)
            for message in await broker.take_all(dead, self.admin_url):
                reasons[broker.text(message.headers.get(H_REASON, "no reason"))] += 1
        return reasons

    async def _recorded_twice(self) -> int | None:
        if self.results.startswith("redis"):
            return await observe.redis_writes_twice(self.results, self.prefix, self.confirmed)
        return observe.replies_twice(self.client, self.confirmed)
