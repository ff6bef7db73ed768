"""Tasks for the workflow fault test: chord members and a callback that counts its runs.

The App reads its settings from the environment (``TASKQ_PREFIX``, ``TASKQ_BROKER`` from
``tests.support.WorkerProcess``, ``TASKQ_RESULTS`` from the test). Each run of a member and
of the callback is counted in Redis, outside the result store, under the test's prefix: in the
Redis of ``TASKQ_TEST_COUNTS`` (default: the result store's), so that a test may restart the
store without losing the counts.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio

from taskq import App, Retry, RetryPolicy, codec
from tests.apps import noise

app = App("wfapp")
noise.register(app)


COUNTS_ENV = "TASKQ_TEST_COUNTS"
GATE_POLL = 0.2  # seconds between the attempts of a held member


def _redis() -> redis.asyncio.Redis:
    default = os.environ.get("TASKQ_RESULTS", "redis://127.0.0.1:6379/0")
    return redis.asyncio.from_url(os.environ.get(COUNTS_ENV, default))


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


@app.task(retry=RetryPolicy(max_attempts=1_000_000, delay=GATE_POLL, backoff=1.0))
async def held(i: int) -> int:
    """A member that returns ``i`` once the test opened its gate (the key ``runs_key(prefix,
    "gate")``), and until then retries in a moment: a chord with it cannot end before the
    test has done what it wanted while the chord runs. Between attempts it waits in a delay
    queue, not in a worker (a worker killed meanwhile does not hold it, so its kills do not
    add up to a crash loop). Counted as a member run when it returns."""
    client = _redis()
    try:
        if not await client.exists(runs_key(app.settings.prefix, "gate")):
            raise Retry(GATE_POLL)
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
