"""The worker's hold (taskq.holding) and the delay targets (taskq.delays), without a broker:
what comes due when, what runners take first, and where a delay is published."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest

from taskq import delays
from taskq.holding import Holder, Inbox, decode_ahead
from taskq.message import CONTENT_TYPE, Envelope
from taskq.topology import DELAY, HOLD_MARK, Names
from taskq.transport import Delivery


class FakeDelivery:
    """What the Holder reads of a delivery: its headers and redelivered flag."""

    def __init__(self, name: str, due: float | None, redelivered: bool = False) -> None:
        self.name = name
        self.headers: dict[str, Any] = {} if due is None else {delays.H_DUE: int(due * 1000)}
        self.redelivered = redelivered
        self.stale = False


def holder_and_log() -> tuple[Holder, list[tuple[str, float, bool]]]:
    log: list[tuple[str, float, bool]] = []
    holder = Holder(lambda d: log.append((d.name, time.time(), d.redelivered)))  # type: ignore[attr-defined]
    return holder, log


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_held_deliveries_come_due_in_due_order_never_early() -> None:
    holder, log = holder_and_log()
    now = time.time()
    dues = {"c": now + 0.3, "a": now + 0.1, "b": now + 0.2}
    for name, due in dues.items():
        holder.on_delivery(FakeDelivery(name, due))  # type: ignore[arg-type]
    assert len(holder) == 3 and not log
    await until(lambda: len(log) == 3)
    assert [name for name, _, _ in log] == ["a", "b", "c"]
    for name, at, _ in log:
        assert at >= dues[name] - 0.001  # the header's unit is a millisecond
    assert len(holder) == 0


async def test_due_or_undated_deliveries_go_at_once() -> None:
    holder, log = holder_and_log()
    holder.on_delivery(FakeDelivery("past", time.time() - 5, redelivered=True))  # type: ignore[arg-type]
    holder.on_delivery(FakeDelivery("undated", None))  # type: ignore[arg-type]
    # A redelivered one that is due may have started before: its flag stays (crash-loop count).
    assert [(name, again) for name, _, again in log] == [("past", True), ("undated", False)]


async def test_a_delivery_back_before_its_time_is_not_a_redelivery() -> None:
    holder, log = holder_and_log()
    holder.on_delivery(FakeDelivery("back", time.time() + 0.05, redelivered=True))  # type: ignore[arg-type]
    await until(lambda: bool(log))
    assert log[0][0] == "back" and log[0][2] is False


async def test_a_delivery_whose_channel_closed_while_held_is_dropped() -> None:
    holder, log = holder_and_log()
    now = time.time()
    lost, kept = FakeDelivery("lost", now + 0.05), FakeDelivery("kept", now + 0.05)
    for delivery in (lost, kept):
        holder.on_delivery(delivery)  # type: ignore[arg-type]
    lost.stale = True  # its connection dropped: the broker took it back
    await until(lambda: len(holder) == 0)
    assert [name for name, _, _ in log] == ["kept"]
    holder.on_delivery(FakeDelivery("later", now + 10))  # type: ignore[arg-type]
    gone = FakeDelivery("gone", now + 10)
    holder.on_delivery(gone)  # type: ignore[arg-type]
    gone.stale = True
    assert [d.name for d in holder.release_all()] == ["later"]  # type: ignore[attr-defined]


async def test_release_all_stops_holding_and_returns_soonest_first() -> None:
    holder, log = holder_and_log()
    now = time.time()
    for name, due in (("late", now + 0.4), ("soon", now + 0.2)):
        holder.on_delivery(FakeDelivery(name, due))  # type: ignore[arg-type]
    released = holder.release_all()
    assert [d.name for d in released] == ["soon", "late"]  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)  # nothing may come due from a stopped hold
    assert log == [] and len(holder) == 0


async def test_fresh_items_go_before_due_ones_and_due_ones_are_limited() -> None:
    inbox: Inbox[str | None] = Inbox(due_limit=2)
    for name in ("d1", "d2", "d3"):
        inbox.put_due(name)
    inbox.put_nowait("f1")
    assert [await inbox.get() for _ in range(3)] == ["f1", "d1", "d2"]
    # Two due items are out: the third waits until one is finished, a fresh one does not.
    third = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0.01)
    assert not third.done()
    inbox.put_nowait("f2")
    await asyncio.sleep(0.01)
    assert third.done() and third.result() == "f2"
    waiting = asyncio.ensure_future(inbox.get())
    inbox.finished("f2")  # a fresh one finishing frees no due slot
    await asyncio.sleep(0.01)
    assert not waiting.done()
    inbox.finished("d1")
    assert await asyncio.wait_for(waiting, 1) == "d3"


async def test_stop_sentinels_in_the_due_lane_never_hold_a_slot() -> None:
    inbox: Inbox[str | None] = Inbox(due_limit=1)
    inbox.put_due(None)
    inbox.put_due(None)
    assert await asyncio.wait_for(inbox.get(), 1) is None
    assert await asyncio.wait_for(inbox.get(), 1) is None


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    inbox: Inbox[str] = Inbox(due_limit=4)
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "x"


@pytest.mark.parametrize(
    ("delay_ms", "levels_ms"),
    [
        (1, 0),
        (10_000, 0),
        (delays.HOLD_WINDOW_MS, 0),
        (delays.HOLD_WINDOW_MS + delays.HOLD_LEAD_MS - 1, 0),
        (delays.HOLD_WINDOW_MS + delays.HOLD_LEAD_MS, delays.HOLD_WINDOW_MS),
        (delays.HOLD_WINDOW_MS * 2 + delays.HOLD_LEAD_MS, delays.HOLD_WINDOW_MS * 2),
        (3_600_000, 54 * delays.HOLD_WINDOW_MS),
        (DELAY.max_ms, (DELAY.max_ms - delays.HOLD_LEAD_MS) // 65536 * 65536),
    ],
)
def test_the_levels_take_the_coarse_part_and_leave_the_lead_to_the_hold(
    delay_ms: int, levels_ms: int
) -> None:
    assert delays.levels_delay(delay_ms) == levels_ms
    held_ms = delay_ms - levels_ms
    assert 0 < held_ms <= delays.HOLD_WINDOW_MS + delays.HOLD_LEAD_MS
    if levels_ms:
        assert held_ms >= delays.HOLD_LEAD_MS
        assert levels_ms % delays.HOLD_WINDOW_MS == 0  # no digit below the window: fewer waits


def test_targets_of_a_short_and_a_long_delay() -> None:
    names = Names("p")
    assert delays.target(names, 5_000, "orders.2") == ("", "p.hold.orders.2", 0)
    exchange, key, levels_ms = delays.target(names, 3_600_000, "default")
    assert levels_ms == 54 * 65536 and exchange == names.delay_exchange(levels_ms)
    assert key == DELAY.routing_key(levels_ms, f"{HOLD_MARK}.default")


def test_the_due_header_rounds_up_and_reads_back() -> None:
    header = delays.due_header(1_000, now=100.0004)
    assert header == {delays.H_DUE: 101_001}
    assert delays.due_of(header) == 101.001
    assert delays.due_of({delays.H_DUE: "soon"}) is None
    assert delays.due_of({delays.H_DUE: True}) is None
    assert delays.due_of({}) is None


@pytest.mark.parametrize(
    ("value", "due"),
    [(101_001.0, 101.001), (101_001.5, 101.0015), (float("nan"), None), (float("inf"), None),
     (Decimal("101001"), None)],
)  # fmt: skip
def test_a_due_time_written_as_another_amqp_number_is_read(
    value: object, due: float | None
) -> None:
    # Another client's double is still the due time: never due at once (early).
    assert delays.due_of({delays.H_DUE: value}) == due


def held_delivery(body: bytes, due: float) -> Delivery:
    """A real delivery of the hold queue of route ``default`` (labelled with the route, as a
    transport labels it; no channel: never acked here)."""
    props = {"headers": {delays.H_DUE: int(due * 1000)}, "content_type": CONTENT_TYPE,
             "message_id": "t-1", "type": "add"}  # fmt: skip
    return Delivery(body, props, 1, False, "p.hold.default", "default", None, None)


async def test_what_it_holds_is_decoded_ahead_and_what_is_due_is_not() -> None:
    prepared: list[Delivery] = []
    holder = Holder(lambda d: None, prepare=prepared.append)
    later = held_delivery(b"", time.time() + 60)
    now = held_delivery(b"", time.time() - 1)
    holder.on_delivery(later)
    holder.on_delivery(now)
    assert prepared == [later]  # one due at once is decided by its runner straight away
    holder.release_all()


def test_a_held_task_message_is_decoded_ahead_and_a_malformed_one_left_to_its_runner() -> None:
    envelope = Envelope(task_id="t-1", task_name="add", queue="default", args=[1, 2],
                        kwargs={}, sent_at=1_700_000_000.0)  # fmt: skip
    good = held_delivery(envelope.to_message().body, time.time() + 60)
    bad = held_delivery(b"\xc1 not msgpack", time.time() + 60)
    decode_ahead(good)
    decode_ahead(bad)
    assert good.decoded is not None and good.decoded.args == [1, 2]
    assert good.decoded.task_id == "t-1" and good.decoded.queue == "default"
    assert bad.decoded is None  # dead-lettered as invalid-message when it comes due
