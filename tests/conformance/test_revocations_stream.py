"""The revocations stream on every transport: a cancel made before a worker starts reaches it
(declare the stream, read it from its first message with a consumer argument and acks), and a
cancel made while it runs reaches it at once (taskq.cancel)."""

from __future__ import annotations

import asyncio

import pytest

from taskq import App, TaskCancelled
from tests.support import eventually, running_worker

DEADLINE = 30.0


async def test_cancels_reach_a_worker_started_later_and_a_running_one(app: App) -> None:
    stopped: list[str] = []

    @app.task
    async def hold() -> None:
        try:
            await asyncio.sleep(DEADLINE * 2)
        finally:
            stopped.append("hold")

    async with app:
        early = await app.send("add", 1, 2)
        await early.cancel(reason="early")
        async with running_worker(app) as worker:
            with pytest.raises(TaskCancelled, match="early"):
                await early.result(timeout=DEADLINE)
            running = await hold.delay()

            async def started() -> bool:
                return running.id in worker.active

            await eventually(started, what="the task to start")
            done = await running.cancel(reason="late", wait=True, timeout=DEADLINE)
            assert done.stopped_on == (worker.name,) and stopped == ["hold"]
            assert await (await app.send("add", 2, 2)).result(timeout=DEADLINE) == 4
