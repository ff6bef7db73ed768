"""Tasks for the worker-subprocess and reconnect tests.

The App reads its settings from the environment: ``tests.support.WorkerProcess`` sets
``TASKQ_PREFIX`` (one per test) and ``TASKQ_BROKER``. Clients send these tasks by name.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from taskq import App, current
from tests.apps import noise

app = App("procapp")
noise.register(app)


@app.task
async def sleepy(seconds: float, tag: int) -> int:
    """Work for ``seconds`` (the task's own work, not a wait for the broker), return ``tag``."""
    await asyncio.sleep(seconds)
    return tag


@app.task(timeout=1)
def stuck(seconds: float) -> None:
    """A plain def task that outlives its 1 s timeout: its thread sleeps on (Python cannot
    stop a thread)."""
    time.sleep(seconds)


@app.task
def busy(seconds: float) -> None:
    """A plain def task without a timeout, for a worker to stop while it runs."""
    time.sleep(seconds)


@app.task
async def record_run(path: str, seconds: float) -> int:
    """Append this worker's pid to ``path``, work for ``seconds``, return the runs recorded."""
    log = Path(path)
    with log.open("a") as file:
        file.write(f"{os.getpid()}\n")
    await asyncio.sleep(seconds)
    return len(log.read_text().splitlines())


@app.task
async def held(log: str, release: str, tag: int) -> int:
    """Run until the file ``release`` exists (at most 120 s), return ``tag``.

    Appends ``start TASK_ID PID`` when it starts and ``end TASK_ID PID`` when it ends to
    ``log`` (see tests.runlog.RunLog), so a test knows which tasks run and how often.
    """
    _note(log, "start")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not Path(release).exists() and loop.time() < deadline:
        await asyncio.sleep(0.02)  # the task's own work: waiting for the test's go
    _note(log, "end")
    return tag


@app.task
async def arrive_at(log: str) -> float:
    """Append ``TASK_ID TIME`` to ``log`` (every run, whichever process), return the time."""
    now = time.time()
    with Path(log).open("a") as file:
        file.write(f"{current().task_id} {now:.6f}\n")
    return now


def _note(log: str, event: str) -> None:
    # One short O_APPEND write per line: lines of several processes never interleave.
    with Path(log).open("a") as file:
        file.write(f"{event} {current().task_id} {os.getpid()}\n")
