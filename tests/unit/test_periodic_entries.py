"""@app.periodic registration, firing IDs and the state record; no broker involved."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from taskq import App, Task, codec
from taskq.exceptions import ConfigurationError, EncodeError, InvalidArguments
from taskq.message import envelope_of
from taskq.periodic import Cron, Every
from taskq.periodic.entry import firing_id, run_now_id
from taskq.periodic.state import BeatState, EntryState, merged
from taskq.sending import firing_envelope
from taskq.topology import MAX_NAME_BYTES

UNREACHABLE = "amqp://guest:guest@192.0.2.1:1/"  # TEST-NET-1: nothing here opens the app
TICK = dt.datetime(2024, 3, 31, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def app() -> App:
    return App("unit", broker=UNREACHABLE, prefix="tqunit")


def test_a_periodic_function_is_also_a_normal_task(app: App) -> None:
    @app.periodic(cron="0 3 * * *", timezone="Europe/Berlin", args=(7,), queue="maintenance")
    async def purge_old(days: int) -> int:
        return days

    assert isinstance(purge_old, Task)
    assert app.tasks["purge_old"] is purge_old
    entry = app.periodic_entries["purge_old"]
    assert entry.schedule == Cron("0 3 * * *", "Europe/Berlin")
    assert entry.args == [7] and entry.kwargs == {} and entry.catch_up == "one"
    assert purge_old.config.queue == "maintenance"


def test_every_takes_seconds_or_a_timedelta_and_start(app: App) -> None:
    @app.periodic(every=30)
    def a() -> None: ...

    @app.periodic(every=dt.timedelta(minutes=5), start=TICK, catch_up="skip")
    def b() -> None: ...

    assert app.periodic_entries["a"].schedule == Every(30_000)
    assert app.periodic_entries["b"].schedule.describe() == "every 5m from 2024-03-31T01:00:00Z"
    assert app.periodic_entries["b"].catch_up == "skip"


@pytest.mark.parametrize(("options", "message"), [
    ({}, "exactly one of every= or cron="),
    ({"every": 10, "cron": "* * * * *"}, "exactly one of every= or cron="),
    ({"cron": "61 * * * *"}, "bad cron expression"),
    ({"cron": "0 3 * *"}, "five fields"),
    ({"cron": "0 0 30 2 *"}, "cron expression"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"every": 0.5}, "at least 1 second"),
    ({"every": 1.0001}, "whole milliseconds"),
    ({"every": "10"}, "seconds or a timedelta"),
    ({"every": 10, "start": dt.datetime(2024, 1, 1)}, "timezone-aware"),
    ({"every": 10, "catch_up": "most"}, "catch_up must be one of"),
])  # fmt: skip
def test_bad_schedules_fail_at_import(app: App, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):

        @app.periodic(**options)  # type: ignore[arg-type]
        def job() -> None: ...

    assert "job" not in app.tasks and "job" not in app.periodic_entries


def test_arguments_that_do_not_fit_fail_at_import(app: App) -> None:
    with pytest.raises(InvalidArguments, match="missing a required argument"):

        @app.periodic(every=60)
        def needs_one(days: int) -> None: ...

    with pytest.raises(InvalidArguments, match="periodic entry 'wrong_type'"):

        @app.periodic(every=60, args=("many",))
        def wrong_type(days: int) -> None: ...

    with pytest.raises(EncodeError):

        @app.periodic(every=60, args=(object(),))
        def unencodable(thing: object) -> None: ...

    assert app.tasks == {} and app.periodic_entries == {}


def test_a_firing_carries_its_tick_and_a_derived_task_id(app: App) -> None:
    @app.periodic(every=60, kwargs={"days": 3}, priority=4)
    async def purge(days: int) -> None: ...

    entry = app.periodic_entries["purge"]
    envelope = firing_envelope(app.settings, entry, TICK, sent_at=1.0)
    assert envelope.task_id == "periodic:purge:2024-03-31T01:00:00Z"
    assert envelope.scheduled_for == TICK and envelope.priority == 4
    assert envelope.reply_to is None
    message = envelope.to_message()
    received = envelope_of(_Received(message.body, message.message_id, message.type))
    assert received.scheduled_for == TICK and received.scheduled_for.tzinfo is not None
    assert (received.args, received.kwargs) == ([3], {})  # bound like any send


class _Received:
    content_type = "application/x-msgpack"
    headers: dict[str, object] = {}
    priority = None
    reply_to = None
    queue = "default"
    flaws: dict[str, str] = {}

    def __init__(self, body: bytes, message_id: str | None, type_: str | None) -> None:
        self.body, self.message_id, self.type = body, message_id, type_


def test_firing_ids_fit_in_an_amqp_short_string() -> None:
    assert firing_id("tick", TICK + dt.timedelta(milliseconds=5)) == (
        "periodic:tick:2024-03-31T01:00:00.005Z"
    )
    long_name = "x" * MAX_NAME_BYTES
    long_id = firing_id(long_name, TICK)
    assert len(long_id.encode()) <= MAX_NAME_BYTES
    assert long_id == firing_id(long_name, TICK)  # deterministic: every replica agrees
    assert long_id != firing_id("y" * MAX_NAME_BYTES, TICK)


def test_run_now_ids_are_new_each_time_and_never_a_scheduled_firings() -> None:
    first, second = run_now_id("tick"), run_now_id("tick")
    assert re.fullmatch(r"periodic:tick:run:[0-9a-f]{32}", first) and first != second
    # An entry whose name looks like another's run-now ID still names its firings apart:
    # a scheduled firing's ID ends in its tick's "Z", a run-now ID in hex digits.
    tricky = firing_id(f"tick:run:{'0' * 32}", TICK)
    assert tricky.endswith("Z") and not re.fullmatch(r".*:run:[0-9a-f]{32}", tricky)
    long_name = "x" * MAX_NAME_BYTES
    long_id = run_now_id(long_name)
    assert len(long_id.encode()) <= MAX_NAME_BYTES
    assert long_id.split(":")[1] == firing_id(long_name, TICK).split(":")[1]  # the same UUID5


def test_state_record_says_where_its_scheduler_runs_and_reads_records_without() -> None:
    state = EntryState(TICK, TICK, "every:1000@0")
    record = BeatState({"a": state}, "s1", TICK, TICK, "node-7")
    assert BeatState.decode(record.encode()).host == "node-7"
    older = {"v": 1, "by": "s0", "since": 0, "at": 0, "e": {"a": [0, None, "every:1000@0"]}}
    assert BeatState.decode(codec.pack(older)).host == ""  # a record of taskq before hosts
    newer = BeatState({}, "s2", TICK, TICK + dt.timedelta(seconds=1), "node-8")
    assert record.merge(newer).host == "node-8" and newer.merge(record).host == "node-8"


def test_state_record_round_trip_and_merge() -> None:
    early = EntryState(TICK, TICK, "every:1000@0")
    later = EntryState(TICK + dt.timedelta(seconds=5), TICK, "every:1000@0")
    one = BeatState({"a": early, "b": later}, "s1", TICK, TICK)
    two = BeatState({"a": later}, "s2", TICK, TICK + dt.timedelta(seconds=1))
    assert BeatState.decode(one.encode()) == one
    both = merged([one.encode(), b"not msgpack \xc1", two.encode()])
    assert both.entries == {"a": later, "b": later}
    assert both.holder == "s2"
    assert merged([]) == BeatState()
