"""Tasks for the worker-subprocess and reconnect tests.

The App reads its settings from the environment: ``tests.support.WorkerProcess`` sets
``TASKQ_PREFIX`` (one per test) and ``TASKQ_BROKER``. Clients send these tasks by name.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from taskq import App

app = App("procapp")


@app.task
async def sleepy(seconds: float, tag: int) -> int:
    """Work for ``seconds`` (the task's own work, not a wait for the broker), return ``tag``."""
    await asyncio.sleep(seconds)
    return tag


@app.task
async def record_run(path: str, seconds: float) -> int:
    """Append this worker's pid to ``path``, work for ``seconds``, return the runs recorded."""
    log = Path(path)
    with log.open("a") as file:
        file.write(f"{os.getpid()}\n")
    await asyncio.sleep(seconds)
    return len(log.read_text().splitlines())
