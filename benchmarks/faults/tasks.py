"""The fault suite's tasks: ``taskq-worker benchmarks.faults.tasks:app`` runs them.

The worker's App takes its settings from the environment (``TASKQ_PREFIX``,
``TASKQ_BROKER``, ``TASKQ_RESULTS``, set by the suite per run); the suite's clients register
the same functions on Apps of their own with ``register``. Each run of a task is written to
the execution ledger (see ``ledger``), not derived from anything taskq reports.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from taskq import App, current

from . import ledger

A = TypeVar("A", bound=App)


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


async def probe(tag: int) -> None:
    """What a runnable message of the producer fuzz calls: ``done probe-TAG`` in the ledger
    (its task ID is whatever the producer drew, unfit for a ledger line)."""
    ledger.note("done", f"probe-{tag}")


def register(app: A) -> A:
    """Register the suite's tasks on ``app`` and return it."""
    app.task(work)
    app.task(probe)
    return app


app = register(App("faults"))
