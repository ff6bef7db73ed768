"""Transport hygiene: control broadcasts leave nothing behind, a bug is not retried as if the
connection dropped, and a Worker works (or fails clearly) in every state."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import time
from pathlib import Path

import pytest

from taskq import App, LifecycleError, Worker, WorkerState
from taskq.control import LastSeen, broadcast
from taskq.message import OutgoingMessage
from taskq.transport.connection import Channel
from tests.broker_control import channels_of
from tests.support import BROKER, running_worker

# one-queue only: transport hygiene, not the worker's queues, is under test
pytestmark = pytest.mark.one_queue_only


async def test_two_hundred_broadcasts_leave_the_channel_count_flat(
    prefix: str, tmp_path: Path
) -> None:
    app = App(f"inspect-{prefix}", broker=BROKER, prefix=prefix)
    memory = LastSeen(BROKER, prefix, str(tmp_path))
    async with app:
        await broadcast(app, "ping", timeout=0.01, memory=memory)
        before = await asyncio.to_thread(channels_of, prefix)
        for _ in range(200):
            await broadcast(app, "ping", timeout=0.01, memory=memory)
        after = await asyncio.to_thread(channels_of, prefix)
    assert before > 0
    assert after == before


async def test_a_bug_in_a_publish_fails_at_once_instead_of_being_retried(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("bug", broker=BROKER, prefix=prefix, publish_timeout=60)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug, not a dropped connection")

    async with app:
        monkeypatch.setattr(Channel, "publish", broken)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="a bug"):
            await app.transport.publish("", "nowhere", OutgoingMessage(body=b"x"))
    assert time.monotonic() - started < 30  # far below publish_timeout (60 s)


def test_the_installed_pamqp_is_in_the_tested_range() -> None:
    # taskq's own AMQP client encodes its cold-path methods with pamqp (pyproject.toml pins
    # the range it was tested with).
    installed = importlib.metadata.version("pamqp")
    version = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    assert (3, 3) <= version < (4, 1)


async def test_a_worker_answers_in_every_state(prefix: str) -> None:
    app = App("states", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app)
    assert worker.state is WorkerState.NEW
    stats = worker.stats()  # before run(): nothing yet, but an answer
    assert stats["state"] == "new" and stats["broker_connected"] is False
    assert worker.active == {} and worker.reserved == 0 and worker.reserved_deliveries() == []
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 20)
    assert worker.state is WorkerState.RUNNING and worker.stats()["broker_connected"] is True
    worker.stop()
    await asyncio.wait_for(run, 30)
    assert worker.state is WorkerState.STOPPED
    assert worker.stats()["broker_connected"] is False
    with pytest.raises(LifecycleError, match="runs once"):
        await worker.run()


async def test_a_worker_stopped_before_it_runs_returns_once_connected(prefix: str) -> None:
    app = App("early-stop", broker=BROKER, prefix=prefix)
    worker = Worker(app)
    worker.stop()
    await asyncio.wait_for(worker.run(), 30)
    assert worker.state is WorkerState.STOPPED


async def test_a_worker_lends_its_connections_to_tasks_that_send(prefix: str) -> None:
    app = App("lend", broker=BROKER, prefix=prefix)

    @app.task
    async def child(x: int) -> int:
        return x * 2

    @app.task
    async def parent(x: int) -> int:
        # a parent that waits for its child: allowed here (4 slots, one parent)
        return await (await child.delay(x)).result(timeout=20, allow_in_task=True)

    client = App("lend-client", broker=BROKER, prefix=prefix)
    async with running_worker(app, concurrency=4), client:
        assert await (await client.send("parent", 21)).result(timeout=30) == 42
