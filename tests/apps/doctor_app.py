"""The App that ``taskq doctor`` examines in the tests: a short task on the default queue and
a long one (timeout one hour) on ``slow``. Settings come from the environment."""

from __future__ import annotations

from taskq import App

app = App("doctor")


@app.task(timeout=5)
async def quick(x: int) -> int:
    return x


@app.task(queue="slow", timeout=3600)
async def slow(x: int) -> int:
    return x
