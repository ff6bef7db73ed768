"""A countdown (and an expiry in seconds) counts from the call that sends the task, not from
when its message gets built: in a gather of thousands of sends the last is built a second or
more after it was asked for, and would be due that much later than the caller meant."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from taskq import App, Hook, Sending
from taskq.sending import eta_and_delay
from taskq.task import SendOptions


class EtaOfEach(Hook):
    """Notes the ETA and the expiry of every message sent."""

    def __init__(self) -> None:
        self.etas: list[dt.datetime | None] = []
        self.expiries: list[dt.datetime | None] = []

    async def before_send(self, send: Sending) -> None:
        self.etas.append(send.envelope.eta)
        self.expiries.append(send.envelope.expires)


def shop() -> tuple[App, EtaOfEach]:
    app = App("countdowns", broker="memory://")
    seen = EtaOfEach()
    app.add_hook(seen)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app, seen


def test_a_countdown_counts_from_the_time_given() -> None:
    called_at = time.time() - 10  # asked for 10 s ago, built now
    eta, delay_ms = eta_and_delay(SendOptions(countdown=30), called_at)
    assert eta == dt.datetime.fromtimestamp(called_at, dt.UTC) + dt.timedelta(seconds=30)
    assert 19_000 <= delay_ms <= 20_001


def test_a_countdown_already_over_when_built_is_due_at_once() -> None:
    eta, delay_ms = eta_and_delay(SendOptions(countdown=5), time.time() - 10)
    assert eta is not None and delay_ms == 0


async def test_delay_counts_the_countdown_from_the_call() -> None:
    app, seen = shop()
    async with app:
        add = app.tasks["add"]
        before = time.time()
        pending = add.options(countdown=30, expires=60).delay(1, 2)  # asked for now...
        after = time.time()
        await asyncio.sleep(0.2)  # ...built later, as the last of a burst of sends is
        await pending
    (eta,), (expires,) = seen.etas, seen.expiries
    assert eta is not None and expires is not None
    assert before + 30 <= eta.timestamp() <= after + 30
    assert before + 60 <= expires.timestamp() <= after + 60


async def test_a_batch_counts_every_countdown_from_its_call() -> None:
    app, seen = shop()
    async with app:
        view = app.tasks["add"].options(countdown=30)
        before = time.time()
        await app.send_many([(view, (i, i)) for i in range(600)])  # built 256 at a time
    assert len(set(seen.etas)) == 1  # one call, one due time for all
    (eta,) = set(seen.etas)
    assert eta is not None and before + 30 <= eta.timestamp() <= time.time() + 30
