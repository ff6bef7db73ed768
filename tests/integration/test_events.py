"""``taskq events`` receives the events of one task, in order, from a real worker process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from taskq import App
from taskq.cli.events import format_event
from tests.support import (
    BROKER,
    REPO,
    WorkerProcess,
    event_listener,
    eventually,
    running_worker,
)

APP = "tests.apps.ops_app:app"


@pytest.mark.idle_extra_queue  # the tail counts every task event of the worker
async def test_events_of_one_task_in_order(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    worker = WorkerProcess(APP, prefix, "--name", "ev1", "--events")
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER, "PYTHONPATH": str(REPO)}
    err_path = tmp_path / "tail.err"
    with err_path.open("wb") as err:
        tail = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskq.cli.admin",
            "events",
            "--json",
            "--filter",
            "task.*",
            "--count",
            "4",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    app = App("ops-client", broker=BROKER, prefix=prefix, events=True)
    try:
        await worker.wait_ready()

        async def listening() -> bool:
            assert tail.returncode is None, err_path.read_text()
            return "listening" in err_path.read_text()

        await eventually(listening, what="the events tail to bind its queue")
        async with app:
            handle = await app.send("add", 2, 3)
            assert await handle.result(timeout=30) == 5
        assert tail.stdout is not None
        out = await asyncio.wait_for(tail.stdout.read(), timeout=30)
        assert await asyncio.wait_for(tail.wait(), timeout=10) == 0
        events = [json.loads(line) for line in out.decode().splitlines()]
        assert [e["type"] for e in events] == [
            "task.sent",
            "task.received",
            "task.started",
            "task.succeeded",
        ]
        assert {e["task_id"] for e in events} == {handle.id}
        assert {e["task"] for e in events} == {"add"}
        assert events[-1]["worker"] == "ev1" and events[-1]["runtime"] >= 0
        assert "task.succeeded" in format_event(events[-1])
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
        worker.kill()


async def test_events_tail_stops_cleanly_on_sigterm(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER, "PYTHONPATH": str(REPO)}
    err_path = tmp_path / "tail.err"
    with err_path.open("wb") as err:
        tail = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "taskq.cli.admin",
            "events",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
    try:

        async def listening() -> bool:
            assert tail.returncode is None, err_path.read_text()
            return "listening" in err_path.read_text()

        await eventually(listening, what="the events tail to start")
        tail.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(tail.wait(), timeout=30) == 0
        assert "Traceback" not in err_path.read_text()
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()


def _adder(prefix: str, **settings: Any) -> App:
    app = App("ev-app", broker=BROKER, prefix=prefix, **settings)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app


async def test_nothing_is_published_while_events_are_off(
    prefix: str, topology_cleanup: set[str]
) -> None:
    off, on = _adder(prefix), _adder(prefix, events=True)
    assert off.settings.events is False
    async with event_listener(off.names) as listener:
        async with off, running_worker(off) as quiet:
            handles = [await off.tasks["add"].delay(i, 1) for i in range(3)]
            assert [await h.result(timeout=15) for h in handles] == [1, 2, 3]
        # Positive control, once the first client and worker have closed their connections
        # (so anything they published is in the listener's queue by now): with events on, the
        # same listener hears the task's events.
        async with on, running_worker(on):
            control = await on.tasks["add"].delay(2, 3)
            assert await control.result(timeout=15) == 5
        heard: list[dict[str, Any]] = []

        async def control_heard() -> bool:
            while (message := await listener.get(no_ack=True, fail=False)) is not None:
                heard.append(json.loads(message.body))
            return {"task.sent", "task.succeeded"} <= {
                e["type"] for e in heard if e.get("task_id") == control.id
            }

        await eventually(control_heard, what="the events of the task sent with events on")
    quiet_ids = {h.id for h in handles}
    from_off = [e for e in heard if e.get("task_id") in quiet_ids or e.get("worker") == quiet.name]
    assert from_off == []
