"""The cancel storm: half of the tasks cancelled while workers are SIGKILLed (issue 23)."""

from __future__ import annotations

import asyncio
import collections
import random
import time

from taskq import TaskStatus
from taskq.cancel import CancelResult
from tests.support import WorkerProcess

from .report import Row
from .run import Run
from .sizes import Sizes

BATCH = 25
"""Cancels in flight at once (each is one confirmed publish and a store write)."""
WORKERS = 2
REASON = "fault suite"


async def cancel_storm(sizes: Sizes) -> list[Row]:
    """``cancel_tasks`` tasks of 20-200 ms on two workers; half of them, drawn at random, are
    cancelled ``BATCH`` at a time (the last sent first), and a worker is SIGKILLed
    ``cancel_kills`` times while the cancels go on (a new worker after each: it reads every
    cancel made so far before it takes a task, and gets the killed worker's deliveries
    again). No cancelled task may start after its cancel was confirmed (the ledger's order
    says), and every other task must run."""
    rng = random.Random(23)
    n = sizes.cancel_tasks
    async with Run("cancel storm", results=sizes.redis, concurrency=8) as run:
        ready = list(await asyncio.gather(*(run.start_worker() for _ in range(WORKERS))))
        work = run.client.tasks["work"]
        handles = await run.send([(work, rng.uniform(0.02, 0.2), i) for i in range(n)])
        # From the back of the queue: the cancels meet queued tasks first, then running and
        # finished ones as the workers come the other way.
        doomed = [h.id for h in sorted(rng.sample(handles, n // 2), key=handles.index)][::-1]
        kills = Kills(run, ready, rng)
        marks = [len(doomed) * (k + 1) // (sizes.cancel_kills + 1)
                 for k in range(sizes.cancel_kills)]  # fmt: skip
        outcomes: list[CancelResult] = []
        began = time.monotonic()
        for start in range(0, len(doomed), BATCH):
            for _ in range(sum(start <= mark < start + BATCH for mark in marks)):
                await kills.one()
            batch = doomed[start : start + BATCH]
            outcomes += await asyncio.gather(*(cancel(run, task_id) for task_id in batch))
        seconds = time.monotonic() - began
        await kills.finish()
        run.notes.append(
            f"{len(doomed)} cancels in {seconds:.1f} s; {len(kills.running)} SIGKILLs of a "
            f"worker meanwhile, tasks running at each: {kills.running}"
        )
        row = await run.count(
            settle_timeout=sizes.settle_timeout, grace=sizes.grace, cancelled=doomed
        )
        row.notes.append(summary(run, outcomes))
        return [row]


async def cancel(run: Run, task_id: str) -> CancelResult:
    """Cancel ``task_id``, with a ledger line before the cancel and one once it is confirmed."""
    run.ledger.note("cancelling", task_id)
    done = await run.client.cancel(task_id, reason=REASON)
    run.ledger.note("cancelled", task_id)
    return done


class Kills:
    """SIGKILLs of a ready worker, each followed by a new worker started in the background
    (the cancels go on meanwhile). One worker that is ready always stays alive."""

    def __init__(self, run: Run, ready: list[WorkerProcess], rng: random.Random) -> None:
        self.run = run
        self.ready = ready
        self.rng = rng
        self.running: list[int] = []
        """Tasks running in the victim at each kill."""
        self._starting: list[asyncio.Task[None]] = []

    async def one(self) -> None:
        """Kill one ready worker (waiting for a new one first if it is the last)."""
        live = [w for w in self.ready if w.process.poll() is None]
        while len(live) < 2 and self._starting:
            await self._starting.pop(0)
            live = [w for w in self.ready if w.process.poll() is None]
        victim = self.rng.choice(live)
        self.ready.remove(victim)
        self.running.append(self.run.sigkill(victim))
        self._starting.append(asyncio.create_task(self._replace()))

    async def _replace(self) -> None:
        self.ready.append(await self.run.start_worker())

    async def finish(self) -> None:
        """Wait for the new workers."""
        await asyncio.gather(*self._starting)


def summary(run: Run, outcomes: list[CancelResult]) -> str:
    """The cancels' figures: how each ended, and what the ledger says their tasks did."""
    snapshot = run.ledger.read()
    started = {task_id for task_id, _ in snapshot.started}
    finished = snapshot.done_by_id()
    statuses = collections.Counter(
        "revoked" if d.status is None else d.status.value for d in outcomes
    )
    cancelled = [d.task_id for d in outcomes if d.status is TaskStatus.CANCELLED]
    never = sum(1 for i in cancelled if i not in started)
    stopped = sum(1 for i in cancelled if i in started and not finished[i])
    ended = sum(1 for i in cancelled if finished[i])
    doomed = {d.task_id for d in outcomes}
    return (
        f"{len(outcomes)} cancelled, status after the cancel: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        + f"; of those CANCELLED: {never} never started, {stopped} stopped while running, "
        f"{ended} ran to their end all the same; started while the "
        f"cancel was in flight: {len(snapshot.racing & doomed)}; started after the cancel was "
        f"confirmed: {len(snapshot.late & doomed)}; the other {len(run.confirmed) - len(doomed)}"
        f" tasks: {sum(1 for i in run.confirmed if i not in doomed and finished[i])} ran"
    )
