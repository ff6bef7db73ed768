"""The taskq benchmark app: no-op tasks (prefix and broker from TASKQ_PREFIX/TASKQ_BROKER)."""

from __future__ import annotations

from taskq import App

from .counter import hit

app = App("bench")


@app.task
async def noop(i: int) -> int:
    """Count the task (the harness's completion signal) and return its argument."""
    hit()
    return i
