"""Quorum work queues and quorum delay levels (RabbitMQ 3.10 runs them on a single node)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from taskq import App, ConfigurationError, delays
from taskq.topology import DELAY
from tests.support import BROKER, running_worker


async def queues_of(prefix: str) -> dict[str, dict[str, Any]]:
    """Type and arguments of every queue whose name starts with ``prefix.``, by rabbitmqctl."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "list_queues", "name", "type", "arguments", "--formatter", "json", "-q",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    return {
        q["name"]: {"type": q["type"], "args": {a[0]: a[2] for a in q["arguments"]}}
        for q in json.loads(out)
        if q["name"].startswith(prefix + ".")
    }


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("quorum", broker=BROKER, prefix=prefix, queue_type="quorum")

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def arrive() -> float:
        return time.time()

    return app


async def test_round_trip_and_delay_on_quorum_queues(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A hold window of 256 ms: the 0.5 s delay spends 256 ms in the levels, the rest held.
    monkeypatch.setattr(delays, "HOLD_WINDOW_MS", 256)
    monkeypatch.setattr(delays, "HOLD_LEAD_MS", 100)
    async with app, running_worker(app):
        assert await (await app.tasks["add"].delay(2, 3)).result(timeout=15) == 5
        sent = time.time()
        handle = await app.tasks["arrive"].options(countdown=0.5).delay()
        assert await handle.result(timeout=15) >= sent + 0.5 - 0.005
        open_queues = await queues_of(app.settings.prefix)
        replies = [
            q for n, q in open_queues.items() if n.startswith(f"{app.settings.prefix}.reply.")
        ]
        assert replies and all(q["type"] == "quorum" for q in replies)

    names = app.names
    queues = await queues_of(app.settings.prefix)
    work = queues[names.work_queue("default")]
    assert work["type"] == "quorum"
    assert "x-max-priority" not in work["args"]
    assert work["args"]["x-dead-letter-exchange"] == names.dlx
    assert work["args"]["x-delivery-limit"] == 100
    assert work["args"]["x-dead-letter-strategy"] == "at-least-once"
    assert queues[names.dead_queue("default")]["type"] == "quorum"

    hold = queues[names.hold_queue("default")]
    assert hold["type"] == "quorum" and "x-max-priority" not in hold["args"]
    assert hold["args"]["x-dead-letter-strategy"] == "at-least-once"

    # The queues of the levels' part of the 0.5 s delay (0x100 ms), declared on first use.
    path = [(p, v) for p, v in enumerate(DELAY.split(256)) if v]
    assert path == [(2, 1)]
    for position, value in path:
        delay = queues[DELAY.queue(names, position, value)]
        assert delay["type"] == "quorum"
        assert delay["args"]["x-message-ttl"] == value * 16**position
        assert delay["args"]["x-dead-letter-strategy"] == "at-least-once"
        assert delay["args"]["x-overflow"] == "reject-publish"


async def test_priority_is_refused_on_quorum_queues(app: App) -> None:
    with pytest.raises(ConfigurationError, match="quorum"):

        @app.task(priority=5)
        async def urgent() -> None: ...

    async with app:
        with pytest.raises(ConfigurationError, match="quorum"):
            await app.tasks["add"].options(priority=3).delay(1, 2)


async def test_one_queue_quorum_next_to_classic_priority_queues(
    prefix: str, topology_cleanup: set[str]
) -> None:
    topology_cleanup.add("ledger")
    app = App("mixed", broker=BROKER, prefix=prefix, quorum_queues={"ledger"})

    @app.task(queue="ledger")
    async def book(amount: int) -> int:
        return amount

    @app.task(priority=5)
    async def urgent() -> str:
        return "ok"

    with pytest.raises(ConfigurationError, match="quorum"):
        app.task(name="bad", queue="ledger", priority=3)(book.func)

    async with app, running_worker(app):
        assert await (await book.delay(7)).result(timeout=15) == 7
        assert await (await urgent.delay()).result(timeout=15) == "ok"
        with pytest.raises(ConfigurationError, match="quorum"):
            await book.options(priority=1).delay(1)

    queues = await queues_of(prefix)
    assert queues[app.names.work_queue("ledger")]["type"] == "quorum"
    default = queues[app.names.work_queue("default")]
    assert default["type"] == "classic"
    assert default["args"]["x-max-priority"] == 10
    assert queues[app.names.dead_queue("ledger")]["type"] == "quorum"
    assert queues[app.names.dead_queue("default")]["type"] == "classic"
