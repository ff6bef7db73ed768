"""Delayed delivery through the binary delay levels, against the real broker.

Timing never decides pass or fail beyond "not earlier than asked" (which the TTL levels
guarantee) and a generous sanity bound; the accuracy figures live in
benchmarks/delay_accuracy.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from taskq import App, ConfigurationError, TaskStatus
from taskq.topology import DELAY_LEVELS, delay_routing_key
from tests.support import BROKER, eventually, queue_messages, running_worker

# time.time() on both sides of one machine; allow for clock granularity only.
GRANULARITY = 0.005
SANITY = 5.0


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("delays", broker=BROKER, prefix=prefix)

    @app.task
    async def arrive(sent: float) -> float:
        """Return the arrival time; the test compares it with the send time."""
        return time.time()

    return app


async def test_delays_arrive_no_earlier_than_asked(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):

        async def one(delay: float) -> float:
            sent = time.time()
            handle = await arrive.options(countdown=delay).delay(sent)
            arrived: float = await handle.result(timeout=delay + 20)
            return arrived - sent

        delays = (0.2, 1.5, 7.0)
        waited = await asyncio.gather(*(one(d) for d in delays))
    for delay, took in zip(delays, waited, strict=True):
        assert took >= delay - GRANULARITY, f"{delay} s delay arrived after {took:.4f} s"
        assert took <= delay + SANITY, f"{delay} s delay arrived after {took:.4f} s"


async def test_long_delay_does_not_hold_back_a_short_one(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        long = await arrive.options(countdown=3600).delay(time.time())
        sent = time.time()
        short = await arrive.options(countdown=1).delay(sent)
        arrived = await short.result(timeout=1 + 10)
        assert arrived - sent >= 1 - GRANULARITY
        assert await long.status() is TaskStatus.PENDING
        # The hour-long message is still parked in a level queue (2**21 ms ~ 35 min).
        depths = [await app.transport.queue_depth(app.names.delay_level(n)) for n in (21, 20)]
        assert sum(d.messages for d in depths if d is not None) == 1


async def test_eta_in_the_past_runs_now_and_future_eta_waits(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        handle = await arrive.options(eta=past).delay(time.time())
        assert await handle.result(timeout=10) > 0
        eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
        handle = await arrive.options(eta=eta).delay(time.time())
        arrived = await handle.result(timeout=10)
        assert arrived >= eta.timestamp() - GRANULARITY


async def test_bad_schedules_are_refused_before_sending(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app:
        with pytest.raises(ConfigurationError, match="timezone-aware"):
            await arrive.options(eta=dt.datetime.now() + dt.timedelta(seconds=5)).delay(0.0)
        with pytest.raises(ConfigurationError, match="not both"):
            await arrive.options(countdown=1, eta=dt.datetime.now(dt.UTC)).delay(0.0)
        with pytest.raises(ConfigurationError, match="countdown"):
            await arrive.options(countdown=-1).delay(0.0)
        with pytest.raises(ConfigurationError, match="longest"):
            await arrive.options(countdown=3 * 365 * 86400).delay(0.0)
        depth = await app.transport.queue_depth(app.names.work_queue("default"))
        assert depth is None or depth.messages == 0  # nothing was sent


async def test_delayed_task_keeps_its_priority(app: App) -> None:
    arrive = app.tasks["arrive"]
    work_queue = app.names.work_queue("default")
    async with app:  # no worker: the message waits in the work queue once delivered
        await arrive.options(countdown=0.3, priority=7).delay(time.time())

        async def arrived() -> int:
            depth = await app.transport.queue_depth(work_queue)
            return depth.messages if depth else 0

        await eventually(arrived, timeout=10, what="the delayed message in the work queue")
    [message] = await queue_messages(app.settings.prefix, work_queue)
    assert message.priority == 7
    assert message.type == "arrive"


async def test_delayed_message_survives_a_worker_restart(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app:
        async with running_worker(app):
            sent = time.time()
            handle = await arrive.options(countdown=3).delay(sent)
        # The worker is gone; the message is in the broker, parked in a delay level queue.
        levels = [
            level
            for level, bit in enumerate(reversed(delay_routing_key(3000, "q").split(".")[:-1]))
            if bit == "1"
        ]
        assert max(levels) == 11 and len(levels) < DELAY_LEVELS

        async def parked() -> int:
            depths = [await app.transport.queue_depth(app.names.delay_level(n)) for n in levels]
            return sum(d.messages for d in depths if d is not None)

        # eventually: a message moving between two levels is briefly in neither.
        assert await eventually(parked, timeout=2, what="the message in a delay level") == 1
        async with running_worker(app):
            arrived = await handle.result(timeout=15)
        assert arrived - sent >= 3 - GRANULARITY
