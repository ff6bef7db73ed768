"""Delayed delivery through hold queues held by workers, the base-16 delay queues for the
far part of a delay (and the binary levels of older versions, for messages sent before an
upgrade), against the real broker.

The levels take only delays longer than the hold window (65.5 s): the tests that need them
within seconds shrink the window (``short_window``: 256 ms, lead 100 ms) in this process,
where both the sender and the worker run.

Timing never decides pass or fail beyond "not earlier than asked" (which the TTL queues
guarantee): a late delivery is only bounded by a deadline far beyond any plausible delay. The
figures live in benchmarks/delay_accuracy.py and benchmarks/delays.py. Every test also checks
that the delay queues hold nothing (or only what it left there on purpose) at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence

import pytest

from taskq import App, ConfigurationError, Hook, Retry, TaskStatus, delays, topology
from taskq.cli.common import ExitCode
from taskq.topology import DELAY
from taskq.transport import Delivery
from taskq.transport.shared import SharedMethods
from tests.broker_control import queue_names
from tests.support import (
    BROKER,
    broker_proxy,
    delay_level_messages,
    delay_queue_messages,
    eventually,
    queue_length,
    queue_messages,
    run_taskq,
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
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hold window of 256 ms and a lead of 100 ms: a delay of a second goes through the
    levels (768 ms of it), then waits the rest in a worker."""
    monkeypatch.setattr(delays, "HOLD_WINDOW_MS", 256)
    monkeypatch.setattr(delays, "HOLD_LEAD_MS", 100)


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
    app: App, prefix: str, short_window: None
) -> None:
    """A worker's start declares none of the 135 TTL queues (each is a broker process; all
    of them made a worker's start take 0.7-1 s); a delay within the hold window declares
    none; a longer one its own path (of the part spent in the levels), and a retry with a
    delay in the worker its own."""
    attempts: list[int] = []

    @app.task
    async def again() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise Retry(delay=0.9)  # 800 ms past the lead: 768 ms (0x300) in the levels
        return len(attempts)

    def ttl_queues() -> set[str]:
        return {name for name in queue_names(f"{prefix}.") if ".delay16." in name}

    arrive = app.tasks["arrive"]
    async with app, running_worker(app):
        assert ttl_queues() == set()
        sent = time.time()
        handle = await arrive.options(countdown=0.2).delay(sent)  # within the window
        assert await handle.result(timeout=0.2 + DEADLINE) >= sent + 0.2 - GRANULARITY
        assert ttl_queues() == set()
        sent = time.time()
        handle = await arrive.options(countdown=0.6).delay(sent)  # 256 ms (0x100) in levels
        assert await handle.result(timeout=0.6 + DEADLINE) >= sent + 0.6 - GRANULARITY
        assert ttl_queues() == set(DELAY.path(app.names, 256).queues)
        assert await (await again.delay()).result(timeout=DEADLINE) == 2
        # A path through the levels comes with the one a window shorter (for a message that
        # waits to be written: see the socket test below).
        assert ttl_queues() == {*DELAY.path(app.names, 256).queues,
                                *DELAY.path(app.names, 768).queues,
                                *DELAY.path(app.names, 512).queues}  # fmt: skip


@pytest.mark.one_queue_only
async def test_a_burst_of_delayed_sends_works_out_each_path_once(
    app: App, short_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delays of one levels path, sent at once, work out what to declare for it once (not
    once per send, as they all wait for the first declaration), and all arrive, none early."""
    planned: list[int] = []
    plan = topology.delay_declarations

    def counted(names: topology.Names, delay_ms: int, quorum: bool) -> topology.DelayDeclarations:
        planned.append(delay_ms)
        return plan(names, delay_ms, quorum)

    monkeypatch.setattr(topology, "delay_declarations", counted)
    countdowns = [0.4 + i / 1000 for i in range(200)]  # 400-599 ms: 256 ms in the levels
    async with app, running_worker(app):
        waited = await waits(app, countdowns)
        assert planned == [256]
        await waits(app, [1.1])  # 1,000 ms past the lead: 768 ms, and the one a window less
        assert planned == [256, 768, 512]
        assert await levels_hold(app) == 0
    for delay, took in zip(countdowns, waited, strict=True):
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
        # The hour-long message is still parked in the levels, in its top digit's queue (3 *
        # 16**5 ms, about 52 min, of the 54 x 65.5 s it spends there), the only one there.
        held = await delay_queue_messages(app.settings.prefix)
        first = DELAY.path(app.names, delays.levels_delay(3_600_000)).queues[0]
        assert first == DELAY.queue(app.names, 5, 3)
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


@pytest.mark.parametrize("countdown", [0.3, 1.0], ids=["straight", "through-the-levels"])
async def test_a_delayed_message_waits_in_its_hold_queue_with_its_due_time(
    app: App, short_window: None, countdown: float
) -> None:
    arrive = app.tasks["arrive"]
    hold_queue = app.names.hold_queue("default")
    async with app:  # no worker: the message waits in the hold queue once there
        before = time.time()
        await arrive.options(countdown=countdown, priority=7).delay(time.time())

        async def arrived() -> int:
            depth = await app.transport.queue_depth(hold_queue)
            return depth.messages if depth else 0

        await eventually(arrived, timeout=DEADLINE, what="the delayed message in its hold queue")
        assert await levels_hold(app) == 0
        assert await queue_length(app.names.work_queue("default")) == 0
    [message] = await queue_messages(app.settings.prefix, hold_queue)
    assert message.priority == 7 and message.type == "arrive"
    due = delays.due_of(message.headers)
    assert due is not None and before + countdown <= due <= time.time() + countdown


async def test_delayed_message_survives_a_worker_restart(app: App) -> None:
    """Held by a worker that stops: given back to its hold queue, run by the next worker at
    its time, once, and not counted as a redelivery (it never started)."""
    arrive = app.tasks["arrive"]
    # Long enough for one worker to stop and the next to start on a loaded machine: a message
    # that reaches the next worker after its due time may have started before, and is rightly
    # counted as a redelivery (CI under load once took over 4 s for the two).
    countdowns = (8.0, 9.0)
    async with app:
        async with running_worker(app) as first:
            sent = time.time()
            handles = [await arrive.options(countdown=c).delay(sent) for c in countdowns]

            async def holding() -> bool:
                return len(first.holder) == 2

            await eventually(holding, timeout=DEADLINE, what="the worker holding both")
        hold_queue = app.names.hold_queue("default")

        async def back_in_the_broker() -> bool:
            return await queue_length(hold_queue) == 2 and await levels_hold(app) == 0

        await eventually(back_in_the_broker, timeout=DEADLINE, what="both given back")
        assert await queue_length(app.names.work_queue("default")) == 0
        seen: list[tuple[str | None, bool]] = []

        class Received(Hook):
            def on_received(self, delivery: Delivery) -> None:
                if delivery.type == "arrive":
                    seen.append((delivery.message_id, delivery.redelivered))

        app.add_hook(Received())
        async with running_worker(app):
            arrived = [await h.result(timeout=DEADLINE) for h in handles]
        # Back before its time: it cannot have started, so it does not count as a crash.
        assert sorted(seen) == sorted((h.id, False) for h in handles)
    for countdown, at in zip(countdowns, arrived, strict=True):
        assert at - sent >= countdown - GRANULARITY
    assert await queue_length(app.names.dead_queue("default")) == 0


@pytest.mark.parametrize("window", ["hold-window", "short-window"])
async def test_a_mixed_delay_batch_all_arrives_none_early(
    app: App, window: str, request: pytest.FixtureRequest
) -> None:
    """Delays of every magnitude, with odd milliseconds (every digit value and position up
    to the seconds), sent at once: each arrives, none before its time; with the short
    window, most of them through the levels first."""
    if window == "short-window":
        request.getfixturevalue("short_window")
    countdowns = [0.001, 0.017, 0.255, 0.256, 0.4095, 0.4096, 1.0, 1.234, 2.5, 3.75] * 3
    async with app, running_worker(app):
        waited = await waits(app, countdowns)
        assert await levels_hold(app) == 0
    early = [(d, w) for d, w in zip(countdowns, waited, strict=True) if w < d - GRANULARITY]
    assert not early, early


@pytest.mark.parametrize("scheme", ["binary", "base-16"])
async def test_a_message_waiting_in_the_old_levels_is_delivered(
    prefix: str, topology_cleanup: set[str], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """The upgrade: a version before hold queues sent a delayed task through its levels (the
    binary ones, or base 16 with the whole delay in them, bound for the work queue); the new
    version's worker still runs it: the levels drain into the delivery exchange by
    themselves, where every work queue keeps both delivery bindings."""

    arrivals: list[float] = []

    def make() -> App:
        app = App("delays", broker=BROKER, prefix=prefix)

        @app.task(ignore_result=True)
        async def arrive(sent: float) -> None:
            arrivals.append(time.time())

        return app

    old = make()
    old_scheme = topology.LEGACY_DELAY if scheme == "binary" else topology.DELAY
    monkeypatch.setattr(topology, "DELAY", old_scheme)
    monkeypatch.setattr(SharedMethods, "holds_delays", False)
    countdown = 4  # seconds: time to see it in the levels, on a loaded machine too
    async with old:  # its reply queue goes when it closes: the task records its arrival
        sent = time.time()
        await old.tasks["arrive"].options(countdown=countdown).delay(sent)

    async def in_the_old_levels() -> bool:  # moving between two levels, it is in neither
        held = await delay_queue_messages(prefix)
        return sum(held[name] for name in old_scheme.queue_names(old.names)) == 1

    await eventually(in_the_old_levels, timeout=countdown / 2, what="the old levels to hold it")
    monkeypatch.undo()

    new = make()
    async with new, running_worker(new):
        assert topology.DELAY.digit_bits == 4
        await new.transport.declare_delay_path(countdown * 1000)

        async def ran() -> bool:
            return bool(arrivals)

        await eventually(ran, timeout=countdown + DEADLINE, what="the task sent before the upgrade")
        assert arrivals[0] >= sent + countdown - GRANULARITY and len(arrivals) == 1
        assert await levels_hold(new) == 0


async def test_inspect_scheduled_shows_what_workers_hold(app: App, prefix: str) -> None:
    arrive = app.tasks["arrive"]
    async with app:
        async with running_worker(app) as worker:
            sent = time.time()
            handle = await arrive.options(countdown=30).delay(sent)

            async def held() -> bool:
                return len(worker.holder) == 1

            await eventually(held, timeout=DEADLINE, what="the worker holding it")
            shown = await run_taskq(prefix, "inspect", "scheduled", "--json")
            text = await run_taskq(prefix, "inspect", "scheduled")
        assert shown.code == ExitCode.OK, shown.err
        report = json.loads(shown.out)
        [mine] = [w for w in report["held"] if w["worker"] == worker.name]
        assert mine["count"] == 1
        [task] = mine["tasks"]
        assert (task["task_id"], task["task"], task["queue"]) == (handle.id, "arrive", "default")
        eta = dt.datetime.fromisoformat(task["eta"]).timestamp()
        assert sent + 30 <= eta + 0.001 <= time.time() + 30.001
        assert report["levels"] == [] and report["hold_queues"] == {}
        assert "1 delayed task(s) held by workers until due" in text.out
        # The worker stopped and gave it back: it waits in the hold queue for the next one.
        after = json.loads((await run_taskq(prefix, "inspect", "scheduled", "--json")).out)
        assert after["hold_queues"] == {app.names.hold_queue("default"): 1}


@pytest.mark.one_queue_only  # one connection to fill; the busy variant's noise is not needed
async def test_a_delayed_send_that_waited_for_the_socket_counts_its_levels_from_its_write(
    prefix: str, topology_cleanup: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a burst the socket takes nothing for a while, and a delayed message waits in this
    process to be written: its delay through the levels must count from its write, or it
    comes out of them after its due time. A window of 2 s: a 5 s countdown waits 4 s in the
    levels (2 s once it waited 1.5 s to be written), then in the hold queue."""
    monkeypatch.setattr(delays, "HOLD_WINDOW_MS", 2000)
    monkeypatch.setattr(delays, "HOLD_LEAD_MS", 100)
    async with broker_proxy() as proxy:
        app = App("delays", broker=proxy.amqp_url(), prefix=prefix)

        @app.task(ignore_result=True)
        async def bulky(blob: bytes) -> None: ...

        @app.task(ignore_result=True)
        async def later() -> None: ...

        async with app:
            # Declared now (the first delayed send declares its paths): not while stalled.
            await later.options(countdown=30).delay()
            proxy.stall()  # as a broker that reads nothing for a while
            filler = asyncio.ensure_future(bulky.delay(b"x" * (32 << 20)))

            async def socket_full() -> bool:
                return app.transport.buffered_bytes > 1 << 20

            await eventually(socket_full, what="the client's socket to take no more")
            due = time.time() + 5
            sending = asyncio.ensure_future(later.options(countdown=5).delay())
            await asyncio.sleep(1.5)  # the broker reads nothing meanwhile (the test's fault)
            proxy.unstall()
            await filler
            handle = await sending
            hold_queue = app.names.hold_queue("default")

            async def arrived() -> float | None:
                ids = {m.message_id for m in await queue_messages(prefix, hold_queue)}
                return time.time() if handle.id in ids else None

            arrival = await eventually(arrived, timeout=DEADLINE, what="it in the hold queue")
    assert arrival < due, f"left the levels {arrival - due:.3f} s after its due time"
