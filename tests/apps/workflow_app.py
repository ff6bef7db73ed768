"""Tasks for the workflow fault test: chord members and a callback that counts its runs.

The App reads its settings from the environment (``TASKQ_PREFIX``, ``TASKQ_BROKER`` from
``tests.support.WorkerProcess``, ``TASKQ_RESULTS`` from the test). Each run of a member and
of the callback is counted in Redis, outside the result store, under the test's prefix.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio

from taskq import App, codec
from tests.apps import noise

app = App("wfapp")
noise.register(app)


def _redis() -> redis.asyncio.Redis:
    return redis.asyncio.from_url(os.environ.get("TASKQ_RESULTS", "redis://127.0.0.1:6379/0"))


def runs_key(prefix: str, what: str) -> str:
    """The Redis key counting the runs of ``what`` (``member``, ``callback``)."""
    return f"{prefix}:test:{what}"


@app.task
async def member(i: int, seconds: float) -> int:
    """Work for ``seconds``, count the run, return ``i``."""
    await asyncio.sleep(seconds)
    client = _redis()
    try:
        await client.incr(runs_key(app.settings.prefix, "member"))
    finally:
        await client.aclose()
    return i


@app.task
async def collect(values: list[int]) -> int:
    """The chord's callback: record each run with the values it got."""
    client = _redis()
    try:
        await client.rpush(runs_key(app.settings.prefix, "callback"), codec.pack(values))
    finally:
        await client.aclose()
    return len(values)
