"""Delayed delivery through the binary delay levels, against the real broker.

Timing never decides pass or fail beyond "not earlier than asked" (which the TTL levels
guarantee): a late delivery is only bounded by a deadline far beyond any plausible delay. The
accuracy figures live in benchmarks/delay_accuracy.py. Every test also checks that the delay
levels hold nothing (or only what it left there on purpose) at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from taskq import App, ConfigurationError, TaskStatus
from taskq.topology import DELAY_LEVELS, delay_routing_key
from tests.support import (
    BROKER,
    delay_level_messages,
    eventually,
    queue_length,
    queue_messages,
    running_worker,
)

# time.time() on both sides of one machine; allow for clock granularity only.
GRANULARITY = 0.005
DEADLINE = 60.0  # seconds past the delay before a result counts as lost


async def levels_hold(app: App) -> int:
    """Messages in all the delay level queues of ``app``'s prefix."""
    return sum(await delay_level_messages(app.settings.prefix))


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
            arrived: float = await handle.result(timeout=delay + DEADLINE)
            return arrived - sent

        delays = (0.2, 1.5, 3.3)  # levels 7..2, 10..2 and 11..2 (in milliseconds)
        waited = await asyncio.gather(*(one(d) for d in delays))
        assert await levels_hold(app) == 0
    for delay, took in zip(delays, waited, strict=True):
        assert took >= delay - GRANULARITY, f"{delay} s delay arrived after {took:.4f} s"


async def test_long_delay_does_not_hold_back_a_short_one(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        long = await arrive.options(countdown=3600).delay(time.time())
        sent = time.time()
        short = await arrive.options(countdown=1).delay(sent)
        arrived = await short.result(timeout=1 + DEADLINE)
        assert arrived - sent >= 1 - GRANULARITY
        assert await long.status() is TaskStatus.PENDING
        # The hour-long message is still parked in a level queue (2**21 ms ~ 35 min), and
        # it is the only one there.
        levels = await delay_level_messages(app.settings.prefix)
        assert levels[21] + levels[20] == 1 and sum(levels) == 1


async def test_eta_in_the_past_runs_now_and_future_eta_waits(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        handle = await arrive.options(eta=past).delay(time.time())
        assert await handle.result(timeout=DEADLINE) > 0
        eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
        handle = await arrive.options(eta=eta).delay(time.time())
        arrived = await handle.result(timeout=DEADLINE)
        assert arrived >= eta.timestamp() - GRANULARITY
        assert await levels_hold(app) == 0


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
        assert await levels_hold(app) == 0


async def test_delayed_task_keeps_its_priority(app: App) -> None:
    arrive = app.tasks["arrive"]
    work_queue = app.names.work_queue("default")
    async with app:  # no worker: the message waits in the work queue once delivered
        await arrive.options(countdown=0.3, priority=7).delay(time.time())

        async def arrived() -> int:
            depth = await app.transport.queue_depth(work_queue)
            return depth.messages if depth else 0

        await eventually(arrived, timeout=DEADLINE, what="the delayed message in the work queue")
        assert await levels_hold(app) == 0
    [message] = await queue_messages(app.settings.prefix, work_queue)
    assert message.priority == 7
    assert message.type == "arrive"


async def test_delayed_message_survives_a_worker_restart(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app:
        async with running_worker(app):
            sent = time.time()
            handle = await arrive.options(countdown=3).delay(sent)
        # The worker is gone; the message is in the broker: parked in a delay level queue
        # (bit L of the delay says the message waits in level L), or arrived in the work
        # queue if the check comes late; never anywhere else, and never twice.
        levels = [
            level
            for level, bit in enumerate(reversed(delay_routing_key(3000, "q").split(".")[:-1]))
            if bit == "1"
        ]
        assert max(levels) == 11 and len(levels) < DELAY_LEVELS
        work_queue = app.names.work_queue("default")

        async def in_the_broker() -> bool:
            held = await delay_level_messages(app.settings.prefix)
            parked = sum(held[level] for level in levels)
            # A message moving between two levels is briefly in neither: eventually.
            return parked + await queue_length(work_queue) == 1 and parked == sum(held)

        await eventually(in_the_broker, timeout=DEADLINE, what="the message in the broker")
        async with running_worker(app):
            arrived = await handle.result(timeout=DEADLINE)
        assert arrived - sent >= 3 - GRANULARITY
        assert await levels_hold(app) == 0
