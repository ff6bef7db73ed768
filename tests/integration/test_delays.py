"""Delayed delivery through the base-16 delay queues (and the binary levels of older
versions, for messages sent before an upgrade), against the real broker.

Timing never decides pass or fail beyond "not earlier than asked" (which the TTL queues
guarantee): a late delivery is only bounded by a deadline far beyond any plausible delay. The
figures live in benchmarks/delay_accuracy.py and benchmarks/delays.py. Every test also checks
that the delay queues hold nothing (or only what it left there on purpose) at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence

import pytest

from taskq import App, ConfigurationError, Retry, TaskStatus, topology
from taskq.topology import DELAY
from tests.broker_control import queue_names
from tests.support import (
    BROKER,
    delay_level_messages,
    delay_queue_messages,
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


async def waits(app: App, delays: Sequence[float]) -> list[float]:
    """Send one ``arrive`` per delay, all at once; how long each took to arrive (s)."""
    arrive = app.tasks["arrive"]

    async def one(delay: float) -> float:
        sent = time.time()
        handle = await arrive.options(countdown=delay).delay(sent)
        arrived: float = await handle.result(timeout=delay + DEADLINE)
        return arrived - sent

    return list(await asyncio.gather(*(one(d) for d in delays)))


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("delays", broker=BROKER, prefix=prefix)

    @app.task
    async def arrive(sent: float) -> float:
        """Return the arrival time; the test compares it with the send time."""
        return time.time()

    return app


async def test_delays_arrive_no_earlier_than_asked(app: App) -> None:
    delays = (0.2, 1.5, 3.3)  # digits 0xc8, 0x5dc and 0xce4 (in milliseconds)
    async with app, running_worker(app):
        waited = await waits(app, delays)
        assert await levels_hold(app) == 0
    for delay, took in zip(delays, waited, strict=True):
        assert took >= delay - GRANULARITY, f"{delay} s delay arrived after {took:.4f} s"


@pytest.mark.one_queue_only  # the extra queue's noise is not what is counted here
async def test_delay_queues_are_declared_on_first_use_only_on_the_delays_path(
    app: App, prefix: str
) -> None:
    """A worker's start declares none of the 135 TTL queues (each is a broker process; all
    of them made a worker's start take 0.7-1 s); a delayed send declares its own path, a
    retry with a delay in the worker its own."""
    attempts: list[int] = []

    @app.task
    async def again() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise Retry(delay=0.05)  # 0x32 ms: the queues of digits 3 and 2
        return len(attempts)

    def ttl_queues() -> set[str]:
        return {name for name in queue_names(f"{prefix}.") if ".delay16." in name}

    async with app, running_worker(app):
        assert ttl_queues() == set()
        sent = time.time()
        handle = await app.tasks["arrive"].options(countdown=0.3).delay(sent)  # 0x12c ms
        assert await handle.result(timeout=0.3 + DEADLINE) >= sent + 0.3 - GRANULARITY
        assert ttl_queues() == set(DELAY.path(app.names, 300).queues)
        assert await (await again.delay()).result(timeout=DEADLINE) == 2
        assert ttl_queues() == {*DELAY.path(app.names, 300).queues,
                                *DELAY.path(app.names, 50).queues}  # fmt: skip


async def test_long_delay_does_not_hold_back_a_short_one(app: App) -> None:
    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        long = await arrive.options(countdown=3600).delay(time.time())
        sent = time.time()
        short = await arrive.options(countdown=1).delay(sent)
        arrived = await short.result(timeout=1 + DEADLINE)
        assert arrived - sent >= 1 - GRANULARITY
        assert await long.status() is TaskStatus.PENDING
        # The hour-long message is still parked in its top digit's queue (3 * 16**5 ms,
        # about 52 min), and it is the only one there.
        held = await delay_queue_messages(app.settings.prefix)
        first = DELAY.path(app.names, 3_600_000).queues[0]
        assert held[first] == 1 and sum(held.values()) == 1


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
        # The worker is gone; the message is in the broker: parked in one of the queues of
        # its path (one per non-zero digit of the delay), or arrived in the work queue if
        # the check comes late; never anywhere else, and never twice.
        path = DELAY.path(app.names, 3000).queues
        assert path == [DELAY.queue(app.names, 2, 11), DELAY.queue(app.names, 1, 11),
                        DELAY.queue(app.names, 0, 8)]  # fmt: skip
        work_queue = app.names.work_queue("default")

        async def in_the_broker() -> bool:
            held = await delay_queue_messages(app.settings.prefix)
            parked = sum(held[queue] for queue in path)
            # A message moving between two queues is briefly in neither: eventually.
            return parked + await queue_length(work_queue) == 1 and parked == sum(held.values())

        await eventually(in_the_broker, timeout=DEADLINE, what="the message in the broker")
        async with running_worker(app):
            arrived = await handle.result(timeout=DEADLINE)
        assert arrived - sent >= 3 - GRANULARITY
        assert await levels_hold(app) == 0


async def test_a_mixed_delay_batch_all_arrives_none_early(app: App) -> None:
    """Delays of every magnitude, with odd milliseconds (every digit value and position up
    to the seconds), sent at once: each arrives, none before its time."""
    delays = [0.001, 0.017, 0.255, 0.256, 0.4095, 0.4096, 1.0, 1.234, 2.5, 3.75] * 3
    async with app, running_worker(app):
        waited = await waits(app, delays)
        assert await levels_hold(app) == 0
    early = [(d, w) for d, w in zip(delays, waited, strict=True) if w < d - GRANULARITY]
    assert not early, early


async def test_a_message_waiting_in_the_old_binary_levels_is_delivered(
    prefix: str, topology_cleanup: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade: a version with the binary levels sent a delayed task; the new version's
    worker (which declares only the base-16 queues) still runs it: the old levels drain into
    the delivery exchange by themselves, where every work queue keeps the old binding."""

    arrivals: list[float] = []

    def make() -> App:
        app = App("delays", broker=BROKER, prefix=prefix)

        @app.task(ignore_result=True)
        async def arrive(sent: float) -> None:
            arrivals.append(time.time())

        return app

    old = make()
    monkeypatch.setattr(topology, "DELAY", topology.LEGACY_DELAY)
    async with old:  # its reply queue goes when it closes: the task records its arrival
        sent = time.time()
        await old.tasks["arrive"].options(countdown=2).delay(sent)
    held = await delay_queue_messages(prefix)
    assert sum(held[name] for name in topology.LEGACY_DELAY.queue_names(old.names)) == 1
    monkeypatch.undo()

    new = make()
    async with new, running_worker(new):
        assert topology.DELAY.digit_bits == 4
        await new.transport.declare_delay_path(2000)

        async def ran() -> bool:
            return bool(arrivals)

        await eventually(ran, timeout=2 + DEADLINE, what="the task sent before the upgrade")
        assert arrivals[0] >= sent + 2 - GRANULARITY and len(arrivals) == 1
        assert await levels_hold(new) == 0
