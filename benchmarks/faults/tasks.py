"""The fault suite's tasks: ``taskq-worker benchmarks.faults.tasks:app`` runs them.

The worker's App takes its settings from the environment (``TASKQ_PREFIX``,
``TASKQ_BROKER``, ``TASKQ_RESULTS``, set by the suite per run); the suite's clients register
the same functions on Apps of their own with ``register``. Each run of a task is written to
the execution ledger (see ``ledger``), not derived from anything taskq reports.
"""

from __future__ import annotations

import asyncio
import os
from typing import TypeVar

from taskq import App, Retry, RetryPolicy, current

from . import ledger

A = TypeVar("A", bound=App)


GATE_POLL = 0.2  # seconds between looks at a gate file (attempts of a held task)
HELD = RetryPolicy(max_attempts=1_000_000, delay=GATE_POLL, backoff=1.0)


async def work(seconds: float, tag: int) -> int:
    """Work for ``seconds`` (the task's own work) and return ``tag``; the ledger gets a
    ``start`` line before and a ``done`` line after, or a ``stopped`` line if the run is
    interrupted (a cancel, a worker's stop)."""
    task_id = current().task_id
    ledger.note("start", task_id)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        ledger.note("stopped", task_id)
        raise
    ledger.note("done", task_id)
    return tag


async def held(tag: int, gate: str) -> int:
    """Return ``tag`` once the file ``gate`` exists; until then, retry in a moment (so that
    a chord cannot end while a scenario's faults land, and the member waits in a delay
    queue, not in a worker: a worker killed meanwhile does not hold it). Ledger lines as
    ``work``'s, written only by the attempt that finds the gate open."""
    if not os.path.exists(gate):
        raise Retry(GATE_POLL)
    task_id = current().task_id
    ledger.note("start", task_id)
    ledger.note("done", task_id)
    return tag


async def gather(values: list[int]) -> int:
    """A chord's callback (ledger lines as ``work``'s): how many ``values`` it got, if they
    are ``0, 1, 2...`` in order, else -1."""
    task_id = current().task_id
    ledger.note("start", task_id)
    in_order = values == list(range(len(values)))
    ledger.note("done", task_id)
    return len(values) if in_order else -1


async def probe(tag: int) -> None:
    """What a runnable message of the producer fuzz calls: ``done probe-TAG`` in the ledger
    (its task ID is whatever the producer drew, unfit for a ledger line)."""
    ledger.note("done", f"probe-{tag}")


def register(app: A) -> A:
    """Register the suite's tasks on ``app`` and return it."""
    app.task(work)
    app.task(probe)
    app.task(gather)
    app.task(held, retry=HELD)
    return app


app = register(App("faults"))
