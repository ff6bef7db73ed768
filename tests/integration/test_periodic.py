"""Periodic schedulers against the real broker, as real ``taskq beat`` processes: failover
under SIGKILL with every tick sent exactly once, catch-up after an outage, a schedule changed
in code, ``taskq-worker --beat`` with ``taskq.current().scheduled_for``, and ``beat list``.

Firings are counted where they land: the work queue (no worker consumes it in the scheduler
tests), one message per firing, named ``periodic:{entry}:{tick}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from taskq import App, BrokerUnavailable
from taskq.cli.common import ExitCode
from taskq.message import OutgoingMessage
from taskq.periodic.schedule import iso
from taskq.topology import Names
from tests.broker_control import close_connections
from tests.support import (
    BROKER,
    REPO,
    BeatProcess,
    WorkerProcess,
    eventually,
    meta_of,
    queue_messages,
)

APP = "tests.apps.beatapp:app"
SECOND = dt.timedelta(seconds=1)
# one-queue only: the scheduler, not the worker's queues, is under test
pytestmark = [pytest.mark.slow, pytest.mark.one_queue_only]


@pytest.fixture
async def client(prefix: str, topology_cleanup: set[str]) -> AsyncIterator[App]:
    """An open client App of the test's prefix (to look at the queues, and send)."""
    async with App("client", broker=BROKER, prefix=prefix) as app:
        yield app


async def _fired(prefix: str) -> list[tuple[str, dt.datetime, float]]:
    """``(entry, tick, sent at)`` of every firing in the default work queue (the entry and
    tick from the task ID, the time it was sent from its metadata)."""
    messages = await queue_messages(prefix, Names(prefix).work_queue("default"))
    firings = []
    for message in messages:
        assert message.message_id is not None
        _, entry, tick = message.message_id.split(":", 2)
        when = dt.datetime.fromisoformat(tick.replace("Z", "+00:00"))
        assert meta_of(message.body)["sf"] == when
        firings.append((entry, when, meta_of(message.body)["t"] / 1000))
    return firings


async def _until_fired(client: App, count: int, what: str) -> None:
    """Poll (with a deadline) until the default work queue holds ``count`` firings."""
    queue = client.names.work_queue("default")

    async def enough() -> bool:
        depth = await client.transport.queue_depth(queue)
        return depth is not None and depth.messages >= count

    await eventually(enough, timeout=30, interval=0.1, what=what)


async def _active(schedulers: list[BeatProcess]) -> BeatProcess:
    """The one scheduler process whose log says it became active."""

    async def one_active() -> list[BeatProcess]:
        active = [s for s in schedulers if s.active]
        assert len(active) <= 1, "two schedulers active at once"
        return active

    return (await eventually(one_active, timeout=15, what="a scheduler to become active"))[0]


def _ticks(
    firings: list[tuple[str, dt.datetime, float]], entry: str, sent_after: float = 0.0
) -> list[dt.datetime]:
    """The ticks of ``entry`` that were sent after ``sent_after`` (Unix time), in order."""
    return sorted(tick for name, tick, sent in firings if name == entry and sent > sent_after)


def _assert_once_each(ticks: list[dt.datetime], step: dt.timedelta = SECOND) -> None:
    """Each tick from the first to the last, every ``step``, exactly once."""
    duplicates = [t for t, n in Counter(ticks).items() if n > 1]
    assert not duplicates, f"sent twice: {[iso(t) for t in duplicates]}"
    gaps = [(iso(a), iso(b)) for a, b in itertools.pairwise(ticks) if b - a != step]
    assert not gaps, f"ticks missing between: {gaps}"


async def _stop(*processes: WorkerProcess) -> None:
    """SIGTERM each process still running; each must exit cleanly. A process still
    starting (a standby just restarted, importing under load) is waited for first: a SIGTERM
    before its handlers exist ends it like any Python process, with -15."""
    running = [p for p in processes if p.process.poll() is None]
    for process in running:
        await process.wait_ready()
        process.signal(signal.SIGTERM)
    for process in running:
        assert await process.wait_exit(30) == ExitCode.OK, process.output()


# -- failover -------------------------------------------------------------------------------------


async def test_two_schedulers_sigkilled_twice_send_every_tick_exactly_once(
    prefix: str, client: App
) -> None:
    env = {"BEAT_ENTRIES": "tick"}
    schedulers = [BeatProcess(APP, prefix, env=env) for _ in range(2)]
    started = list(schedulers)
    try:
        active = await _active(schedulers)
        killed_at = []
        for target in (7, 14):  # about 20 s in all: a kill every ~7 firings
            await _until_fired(client, target, f"{target} firings")
            active.process.kill()  # SIGKILL: no goodbye to the broker
            killed_at.append(time.time())
            await active.wait_exit()
            schedulers.remove(active)
            schedulers.append(BeatProcess(APP, prefix, env=env))  # restarted: stands by
            started.append(schedulers[-1])
            active = await _active(schedulers)
        await _until_fired(client, 20, "20 firings")
        await _stop(*schedulers)
        ticks = _ticks(await _fired(prefix), "tick")
        _assert_once_each(ticks)
        assert len(ticks) >= 20
        for kill in killed_at:  # the window spans both failovers
            assert ticks[0].timestamp() < kill < ticks[-1].timestamp()
    finally:
        for scheduler in started:
            scheduler.kill()


async def test_lease_moves_with_its_record_when_the_broker_drops_the_holder(client: App) -> None:
    stop = asyncio.Event()
    first = client.transport.beat_lease("first")
    second = client.transport.beat_lease("second")
    lease_queue = client.names.beat_lease

    async def bidders() -> bool:
        depth = await client.transport.queue_depth(lease_queue)
        return depth is not None and depth.consumers == 2

    try:
        held = await first.acquire(b"\x80", stop)  # an empty msgpack map: the first record
        assert held is not None and held.records == [b"\x80"]
        # A firing routed nowhere comes back from the commit by its ID (it is not lost quietly).
        nowhere = OutgoingMessage(body=b"\x90", message_id="periodic:x:2024-01-01T00:00:00Z")
        returned = await held.commit(
            [("", f"{client.names.prefix}.nowhere", nowhere)], b"\x81\xa1k\x01"
        )  # the state the next holder must get
        assert list(returned) == [nowhere.message_id]
        assert held.records == [b"\x81\xa1k\x01"]
        bid = asyncio.create_task(second.acquire(b"\x80", stop))
        await eventually(bidders, what="the second bidder to consume")
        assert not bid.done()  # the lease is held: the second bidder waits
        assert await close_connections("taskq-beat:first") == 1
        taken = await asyncio.wait_for(bid, 15)
        assert taken is not None and taken.records == [b"\x81\xa1k\x01"]

        async def lost() -> bool:
            return held.lost

        await eventually(lost, what="the first holder to see the lease lost")
        with pytest.raises(BrokerUnavailable, match="lease is lost"):
            await held.commit([], b"\x80")
    finally:
        await first.release()
        await second.release()


# -- outages and deploys --------------------------------------------------------------------------


async def test_catch_up_policies_after_all_schedulers_were_down(prefix: str, client: App) -> None:
    env = {"BEAT_ENTRIES": "policies"}
    first = BeatProcess(APP, prefix, env=env)
    second: BeatProcess | None = None
    try:
        await _active([first])
        await _until_fired(client, 6, "two firings per entry")
        first.process.kill()
        killed_at = time.time()
        await first.wait_exit()
        await asyncio.sleep(10)  # the outage under test: no scheduler runs for 10 s
        second = BeatProcess(APP, prefix, env=env)
        await _active([second])
        since = second.since
        depth = len(await _fired(prefix))
        await _until_fired(client, depth + 6, "two on-time firings per entry")
        await _stop(second)
        firings = await _fired(prefix)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    for entry in ("catch_all", "catch_one", "catch_skip"):
        # The last tick the first scheduler sent: the cursor the second one starts from.
        cursor = max(t for name, t, sent in firings if name == entry and sent < killed_at)
        missed = [cursor + i * SECOND for i in range(1, 60) if cursor + i * SECOND <= since]
        assert len(missed) >= 10  # ticks that came due while no scheduler was active
        after = _ticks(firings, entry, sent_after=killed_at)
        caught_up = [t for t in after if t <= since]
        expected = {"catch_all": missed, "catch_one": missed[-1:], "catch_skip": []}[entry]
        assert caught_up == expected, entry
        on_time = [t for t in after if t > since]
        assert len(on_time) >= 2
        _assert_once_each(on_time)
        assert on_time[0] == missed[-1] + SECOND


async def test_a_schedule_changed_in_code_applies_after_a_restart(prefix: str, client: App) -> None:
    old = BeatProcess(APP, prefix, env={"BEAT_ENTRIES": "v1"})
    new: BeatProcess | None = None
    try:
        await _active([old])
        await _until_fired(client, 4, "two firings of a and b")
        await _stop(old)
        stopped = dt.datetime.now(dt.UTC)
        new = BeatProcess(APP, prefix, env={"BEAT_ENTRIES": "v2"})  # a: every 2 s; b: removed
        await _active([new])
        depth = len(await _fired(prefix))
        await _until_fired(client, depth + 2, "two firings of the new a")
        await _stop(new)
        firings = await _fired(prefix)
        since = new.since
    finally:
        old.kill()
        if new is not None:
            new.kill()
    assert _ticks(firings, "b", sent_after=stopped.timestamp()) == []  # removed: fires no more
    new_a = _ticks(firings, "a", sent_after=stopped.timestamp())
    assert len(new_a) >= 2
    assert all(t > since and t.timestamp() % 2 == 0 for t in new_a)  # the new schedule
    _assert_once_each(new_a, 2 * SECOND)
    _assert_once_each([t for t in _ticks(firings, "a") if t <= stopped])
    _assert_once_each(_ticks(firings, "b"))


# -- embedded in a worker, and what the CLI shows ----------------------------------------------


def _cli(prefix: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER,
           "BEAT_ENTRIES": "stamp", "PYTHONPATH": str(REPO)}  # fmt: skip
    command = [sys.executable, "-m", "taskq.cli.admin", "--app", APP, *args, "--json"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_worker_with_beat_runs_firings_that_know_their_tick(
    prefix: str, client: App, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    env = {"BEAT_ENTRIES": "stamp", "BEAT_LEDGER": str(ledger)}
    worker = WorkerProcess(APP, prefix, "--beat", env=env)
    try:
        await worker.wait_ready()
        await client.send("stamp", "plain")

        async def stamped() -> list[dict[str, str]]:
            lines = ledger.read_text().splitlines() if ledger.exists() else []
            seen = [json.loads(line) for line in lines]
            periodic = [s for s in seen if s["how"] == "periodic"]
            return seen if len(periodic) >= 2 and len(seen) > len(periodic) else []

        seen = await eventually(stamped, what="two firings and a plain send to run")
        status = _cli(prefix, "beat", "list")
        inspected = _cli(prefix, "inspect", "periodic")
        worker.signal(signal.SIGTERM)
        assert await worker.wait_exit() == ExitCode.OK, worker.output()
    finally:
        worker.kill()
    for stamp in seen:
        if stamp["how"] == "plain":
            assert stamp["sf"] is None
            continue
        scheduled_for = dt.datetime.fromisoformat(stamp["sf"])
        assert scheduled_for.utcoffset() == dt.timedelta(0)
        assert stamp["id"] == f"periodic:stamp:{iso(scheduled_for)}"
    active = status["active"]
    assert isinstance(active, dict) and active["scheduler"].endswith(f".{worker.process.pid}")
    assert status["schedulers"] == 1
    (entry,) = status["entries"]
    assert entry["name"] == "stamp" and entry["schedule"] == "every 1s"
    assert entry["last_fired"] is not None and entry["next_tick"] > entry["last_fired"]
    assert inspected["entries"][0]["name"] == "stamp"
