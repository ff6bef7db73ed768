"""Schedules, ticks and the scheduler's decisions, with the clock injected; no broker."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from taskq.periodic.plan import Firing, next_tick, settle
from taskq.periodic.schedule import Cron, Every, Schedule, iso, to_ms
from taskq.periodic.state import EntryState

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """An aware UTC datetime from ``2024-03-31T01:00:00``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Entry:
    """What planning needs of an entry."""

    name: str
    schedule: Schedule
    catch_up: str = "one"


# -- Every ----------------------------------------------------------------------------------------


def test_every_ticks_on_multiples_of_the_interval_since_the_epoch() -> None:
    every = Every(30_000)
    assert every.after(at("2024-05-01T12:00:00.5")) == at("2024-05-01T12:00:30")
    assert every.after(at("2024-05-01T12:00:30")) == at("2024-05-01T12:01:00")  # strictly after
    hourly = Every(3_600_000)
    assert hourly.after(at("2024-05-01T12:34:56")) == at("2024-05-01T13:00:00")


def test_every_with_a_start_ticks_from_it_and_never_before() -> None:
    every = Every(60_000, start_ms=to_ms(at("2024-05-01T12:00:10")))
    assert every.after(at("2024-05-01T11:00:00")) == at("2024-05-01T12:00:10")
    assert every.after(at("2024-05-01T12:00:10")) == at("2024-05-01T12:01:10")
    assert every.latest(at("2024-05-01T10:00"), at("2024-05-01T11:00")) is None


def test_every_between_and_latest() -> None:
    every = Every(1000)
    ticks = every.between(at("2024-05-01T12:00:00.2"), at("2024-05-01T12:00:05"), 100)
    assert [iso(t) for t in ticks] == [f"2024-05-01T12:00:0{i}Z" for i in range(1, 6)]
    assert len(every.between(at("2024-05-01T12:00:00"), at("2024-05-01T13:00:00"), 7)) == 7
    assert every.latest(at("2024-05-01T12:00:00"), at("2024-05-01T12:00:09.9")) == at(
        "2024-05-01T12:00:09"
    )
    assert every.latest(at("2024-05-01T12:00:09"), at("2024-05-01T12:00:09.9")) is None


def test_replicas_agree_whenever_they_started() -> None:
    # Two schedulers that started at different moments compute the same next tick.
    every = Every(45_000)
    assert every.after(at("2024-05-01T12:00:01")) == every.after(at("2024-05-01T12:00:44"))


# -- Cron and DST ---------------------------------------------------------------------------------


def test_cron_ticks_in_its_time_zone() -> None:
    berlin = Cron("0 3 * * *", "Europe/Berlin")
    assert berlin.after(at("2024-01-15T12:00")) == at("2024-01-16T02:00")  # CET = UTC+1
    assert berlin.after(at("2024-07-15T12:00")) == at("2024-07-16T01:00")  # CEST = UTC+2


def _simulate(
    entry: Entry, start: dt.datetime, end: dt.datetime, step: dt.timedelta | None
) -> list[Firing]:
    """Run the scheduler's decisions with an injected clock from ``start`` to ``end``: the
    clock jumps to each next tick (``step`` None) or moves by ``step``; return the firings."""
    since = now = start
    states: dict[str, EntryState] = {}
    fired: list[Firing] = []
    while now <= end:
        firings, states = settle([entry], states, now=now, since=since, limit=100)
        fired += firings
        upcoming = next_tick([entry], states)
        assert upcoming is not None
        now = upcoming if step is None else now + step
    return fired


SPRING = [  # 2024-03-31: Berlin skips 02:00-03:00; 02:30 runs when the gap ends (03:00 CEST)
    "2024-03-29T01:30:00Z", "2024-03-30T01:30:00Z", "2024-03-31T01:00:00Z",
    "2024-04-01T00:30:00Z", "2024-04-02T00:30:00Z",
]  # fmt: skip
FALL = [  # 2024-10-27: Berlin repeats 02:00-03:00; 02:30 runs once, at the first one (CEST)
    "2024-10-25T00:30:00Z", "2024-10-26T00:30:00Z", "2024-10-27T00:30:00Z",
    "2024-10-28T01:30:00Z", "2024-10-29T01:30:00Z",
]  # fmt: skip


@pytest.mark.parametrize("step", [None, dt.timedelta(minutes=7)], ids=["at-ticks", "every-7-min"])
@pytest.mark.parametrize(("start", "expected"), [
    (at("2024-03-28T12:00"), SPRING), (at("2024-10-24T12:00"), FALL),
], ids=["spring-forward", "fall-back"])  # fmt: skip
def test_daily_0230_berlin_fires_once_a_day_at_the_right_instant(
    start: dt.datetime, expected: list[str], step: dt.timedelta | None
) -> None:
    entry = Entry("nightly", Cron("30 2 * * *", "Europe/Berlin"))
    fired = _simulate(entry, start, start + dt.timedelta(days=5), step)
    assert [iso(f.tick) for f in fired] == expected
    assert not any(f.late for f in fired)


def test_cron_latest_on_a_fall_back_night() -> None:
    # At 01:15 UTC (02:15 CET, the repeated hour) the day's 02:30 already ran at 00:30 UTC.
    nightly = Cron("30 2 * * *", "Europe/Berlin")
    assert nightly.latest(at("2024-10-26T12:00"), at("2024-10-27T01:15")) == at("2024-10-27T00:30")
    assert nightly.after(at("2024-10-27T01:15")) == at("2024-10-28T01:30")


def test_a_cron_with_a_wildcard_hour_fires_in_both_repeated_hours() -> None:
    half_hourly = Entry("half", Cron("*/30 * * * *", "Europe/Berlin"))
    fired = _simulate(half_hourly, at("2024-10-26T23:50"), at("2024-10-27T02:05"), None)
    assert [iso(f.tick)[11:16] for f in fired] == ["00:00", "00:30", "01:00", "01:30", "02:00"]


# -- catch-up policies ----------------------------------------------------------------------------

FP = Every(1000).fingerprint
CURSOR = at("2024-05-01T12:00:00")  # the last tick the previous scheduler settled
SINCE = at("2024-05-01T12:00:10.5")  # this scheduler became active: ticks :01..:10 were missed
NOW = at("2024-05-01T12:00:12.1")  # ... and :11, :12 came due while it was active


@pytest.mark.parametrize(("policy", "late"), [
    ("all", [f"12:00:{s:02d}" for s in range(1, 11)]),
    ("one", ["12:00:10"]),
    ("skip", []),
])  # fmt: skip
def test_catch_up_policies(policy: str, late: list[str]) -> None:
    entry = Entry("e", Every(1000), policy)
    states = {"e": EntryState(CURSOR, CURSOR, FP)}
    fired, after = settle([entry], states, now=NOW, since=SINCE, limit=100)
    assert [iso(f.tick)[11:19] for f in fired if f.late] == late
    assert [iso(f.tick)[11:19] for f in fired if not f.late] == ["12:00:11", "12:00:12"]
    assert after["e"].cursor == at("2024-05-01T12:00:12")
    assert after["e"].last_fired == at("2024-05-01T12:00:12")
    # Settled means settled: nothing fires twice, whatever the next call's clock says.
    again, _ = settle([entry], after, now=NOW, since=SINCE, limit=100)
    assert again == []


def test_a_long_catch_up_goes_out_in_batches_and_fires_each_tick_once() -> None:
    entry = Entry("e", Every(1000), "all")
    states = {"e": EntryState(CURSOR, None, FP)}
    since = CURSOR + dt.timedelta(seconds=250)
    batches = []
    while True:
        fired, states = settle([entry], states, now=since, since=since, limit=100)
        batches.append(len(fired))
        if len(fired) < 100:
            break
    assert batches == [100, 100, 50]
    assert states["e"].cursor == since


def test_a_new_entry_owes_nothing_before_the_scheduler_started() -> None:
    entry = Entry("new", Every(1000), "all")
    fired, states = settle([entry], {}, now=SINCE, since=SINCE, limit=100)
    assert fired == []
    assert states["new"] == EntryState(SINCE, None, FP)
    assert next_tick([entry], states) == at("2024-05-01T12:00:11")


def test_a_changed_schedule_starts_afresh_and_never_goes_back() -> None:
    old = {"e": EntryState(CURSOR, CURSOR, Every(1000).fingerprint)}
    entry = Entry("e", Every(2000), "all")  # changed in code: no catch-up on the old ticks
    fired, states = settle([entry], old, now=NOW, since=SINCE, limit=100)
    assert [iso(f.tick)[11:19] for f in fired] == ["12:00:12"]
    assert states["e"].fingerprint == entry.schedule.fingerprint
    # A clock behind the previous scheduler's cursor does not re-fire what it settled.
    ahead = {"e": EntryState(at("2024-05-01T12:00:20"), None, FP)}
    fired, _ = settle([Entry("e", Every(1000))], ahead, now=NOW, since=SINCE, limit=100)
    assert fired == []


def test_states_of_entries_this_code_does_not_have_are_kept() -> None:
    others = {"gone": EntryState(CURSOR, CURSOR, FP)}
    _, states = settle([Entry("e", Every(1000))], others, now=NOW, since=SINCE, limit=100)
    assert states["gone"] == others["gone"]
