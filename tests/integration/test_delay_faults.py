"""Delayed tasks held by a worker (taskq.delays) through the faults that return them to the
broker: the worker killed with SIGKILL, and a broker restart (serial: it stops the broker, and
always starts it again). Each runs once, none before its time, none counted as a crash."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskq import App, TaskHandle
from tests.broker_control import broker_answers, rabbitmqctl
from tests.support import BROKER, WorkerProcess, eventually, queue_length

APP = "tests.apps.procapp:app"
COUNTDOWNS = [3.0 + i / 10 for i in range(20)]  # 3.0 .. 4.9 s: due after the fault
GRANULARITY = 0.005
pytestmark = pytest.mark.slow


async def send_delayed(client: App, log: Path) -> tuple[float, list[TaskHandle[Any]]]:
    arrive_at = client.named("arrive_at")
    sent = time.time()
    handles = [await arrive_at.options(countdown=c).delay(str(log)) for c in COUNTDOWNS]
    return sent, handles


async def all_ran(log: Path, timeout: float) -> None:
    """Wait until the log has a run of every task (results may be lost with a reply queue
    that was away: the log is what counts)."""

    async def ran() -> bool:
        return log.exists() and len(log.read_text().splitlines()) >= len(COUNTDOWNS)

    await eventually(ran, timeout=timeout, what="every delayed task to run")


async def held_by_the_worker(client: App) -> None:
    """Wait until the worker took every message out of the hold queue (it holds them)."""
    hold_queue = client.names.hold_queue("default")

    async def taken() -> bool:
        depth = await client.transport.queue_depth(hold_queue)
        return depth is not None and depth.messages == 0 and depth.consumers > 0

    await eventually(taken, what="the worker to hold every delayed message")


def check_runs(log: Path, sent: float, handles: list[TaskHandle[Any]]) -> None:
    runs = [line.split() for line in log.read_text().splitlines()]
    assert Counter(task_id for task_id, _ in runs) == {h.id: 1 for h in handles}
    started = {task_id: float(at) for task_id, at in runs}
    for countdown, handle in zip(COUNTDOWNS, handles, strict=True):
        assert started[handle.id] >= sent + countdown - GRANULARITY, "started early"


async def test_held_delays_survive_a_sigkilled_worker(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    log = tmp_path / "arrivals.log"
    client = App(f"delay-kill-{prefix}", broker=BROKER, prefix=prefix)
    first = WorkerProcess(APP, prefix)
    second = None
    try:
        await first.wait_ready()
        async with client:
            sent, handles = await send_delayed(client, log)
            await held_by_the_worker(client)
            first.process.kill()  # SIGKILL: no goodbye, the broker returns what it held
            first.process.wait(10)
            second = WorkerProcess(APP, prefix)
            await second.wait_ready()
            await all_ran(log, timeout=60)
            assert await queue_length(client.names.dead_queue("default")) == 0
        check_runs(log, sent, handles)
    finally:
        first.kill()
        if second is not None:
            second.kill()


@pytest.mark.serial  # it stops the broker
async def test_held_delays_survive_a_broker_restart(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    log = tmp_path / "arrivals.log"
    client = App(f"delay-restart-{prefix}", broker=BROKER, prefix=prefix)
    worker = WorkerProcess(APP, prefix)
    try:
        await worker.wait_ready()
        async with client:
            sent, handles = await send_delayed(client, log)
            await held_by_the_worker(client)
            try:
                await rabbitmqctl("stop_app")
            finally:
                await rabbitmqctl("start_app")
            await eventually(broker_answers, timeout=60, what="RabbitMQ to listen again")
            # The broker took back what the worker held; the worker reconnects and holds it
            # again.
            await all_ran(log, timeout=90)
            assert await queue_length(client.names.dead_queue("default")) == 0
        check_runs(log, sent, handles)
        assert worker.process.poll() is None, "the worker must survive the restart"
    finally:
        if not await broker_answers():
            await rabbitmqctl("start_app")
        worker.kill()
