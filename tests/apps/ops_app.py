"""Tasks for the operating tests (inspect, events, metrics) run by ``taskq-worker`` subprocesses.

Settings come from the environment (``TASKQ_PREFIX``, ``TASKQ_BROKER``, set by
``tests.support.WorkerProcess``); clients send these tasks by name.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskq import App
from tests.apps import noise

app = App("ops")
noise.register(app)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def hold(path: str, limit: float = 30.0) -> str:
    """Run until ``path`` exists (the test releases it), at most ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not Path(path).exists() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return path


@app.task
async def fail(message: str) -> None:
    raise ValueError(message)


@app.task
async def fail_unless(path: str, message: str) -> str:
    """Fail with ``message`` unless ``path`` exists (a replay after the test creates it works)."""
    if not Path(path).exists():
        raise ValueError(message)
    return "fixed"


@app.task
async def login(user: str, password: str) -> str:
    """Always refused: its dead letter and its pages must never show ``password``."""
    raise PermissionError(f"no entry for {user}")
