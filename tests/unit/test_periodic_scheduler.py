"""The Scheduler's loop with a stand-in lease and an injected clock: what it commits, when.

The lease itself (single active consumer, transactions) is tested against the broker in
tests/integration/test_periodic.py; here virtual time runs as fast as the loop asks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

from taskq import App
from taskq.message import OutgoingMessage
from taskq.periodic import Scheduler
from taskq.periodic.scheduler import RENEW_AFTER
from taskq.periodic.state import BeatState
from taskq.sending import Sender

UNREACHABLE = "amqp://guest:guest@192.0.2.1:1/"  # TEST-NET-1: nothing here connects
START = dt.datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


class FakeTenure:
    """Holds one record; each wait moves the clock on by what the scheduler asked for."""

    def __init__(
        self, clock: Clock, record: bytes, scheduler: list[Scheduler], until: dt.datetime
    ) -> None:
        self.clock, self.held, self.scheduler, self.until = clock, [record], scheduler, until
        self.commits: list[tuple[dt.datetime, list[OutgoingMessage], BeatState]] = []
        self.lost = False

    @property
    def records(self) -> list[bytes]:
        return list(self.held)

    async def wait(self, timeout: float | None, stop: asyncio.Event) -> None:
        assert timeout is not None and 0 <= timeout <= 5
        self.clock.now += dt.timedelta(seconds=timeout)
        if self.clock.now >= self.until:
            self.scheduler[0].stop()

    async def commit(
        self, messages: list[tuple[str, str, OutgoingMessage]], record: bytes
    ) -> dict[str, int]:
        assert all(exchange == "tqunit" and key == "default" for exchange, key, _ in messages)
        self.commits.append((self.clock.now, [m for _, _, m in messages], BeatState.decode(record)))
        self.held = [record]
        return {}


class FakeLease:
    def __init__(self, tenure: FakeTenure) -> None:
        self.tenure = tenure
        self.released = 0

    async def acquire(self, initial: bytes, stop: asyncio.Event) -> FakeTenure | None:
        return None if stop.is_set() else self.tenure

    async def release(self) -> None:
        self.released += 1


class FakeTransport:
    def __init__(self, lease: FakeLease, app: App) -> None:
        self.lease = lease
        self.names = app.names
        self.declared: list[str] = []

    def beat_lease(self, holder: str) -> FakeLease:
        return self.lease

    async def declare_work_queue(self, queue: str) -> None:
        self.declared.append(queue)


async def _run(app: App, seconds: float) -> tuple[FakeTenure, FakeTransport]:
    clock = Clock()
    holder: list[Scheduler] = []
    until = START + dt.timedelta(seconds=seconds)
    tenure = FakeTenure(clock, BeatState().encode(), holder, until)
    transport = FakeTransport(FakeLease(tenure), app)
    scheduler = Scheduler(app.periodic_entries, app.names, name="s", clock=clock)
    holder.append(scheduler)
    await scheduler.run(Sender.over(transport, None, app.settings))  # type: ignore[arg-type]
    assert scheduler.state == "stopped" and transport.lease.released >= 1
    return tenure, transport


async def test_each_tick_goes_out_with_the_state_that_counts_it() -> None:
    app = App("unit", broker=UNREACHABLE, prefix="tqunit")

    @app.periodic(every=1, args=(5,))
    async def tick(n: int) -> None: ...

    tenure, transport = await _run(app, 3.6)
    assert transport.declared == ["default"]
    first, *firing = tenure.commits
    assert first[1] == [] and first[2].entries["tick"].cursor == START  # the baseline
    assert [messages[0].message_id for _, messages, _ in firing] == [
        f"periodic:tick:2024-05-01T12:00:0{s}Z" for s in (1, 2, 3, 4)
    ]
    for when, messages, state in firing:
        tick_at = state.entries["tick"].last_fired
        assert tick_at is not None and when >= tick_at  # sent at or after its tick
        assert (when - tick_at).total_seconds() < 0.01
        assert len(messages) == 1 and state.holder == "s" and state.since == START


async def test_an_idle_holder_renews_its_record() -> None:
    app = App("unit", broker=UNREACHABLE, prefix="tqunit")

    @app.periodic(cron="0 3 * * *")
    async def nightly() -> None: ...

    tenure, _ = await _run(app, 3 * RENEW_AFTER + 1)
    times = [when for when, messages, _ in tenure.commits if not messages]
    assert len(tenure.commits) == len(times) == 4  # activation, then once a minute
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(abs(gap - RENEW_AFTER) < 0.01 for gap in gaps)
