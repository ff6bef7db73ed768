"""``taskq dlq list|replay|purge`` and ``taskq purge`` end to end: the real CLI in a subprocess."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os

import pytest

from taskq import App, Reject, current, dlq
from taskq.message import H_REASON, OutgoingMessage
from tests.support import (
    BROKER,
    Cli,
    eventually,
    meta_of,
    queue_length,
    queue_messages,
    run_taskq,
    running_worker,
)


async def taskq_answering(prefix: str, answer: str, *args: str) -> Cli:
    """Run ``taskq ARGS`` with a terminal on stdin that has ``answer`` typed into it."""
    primary, secondary = os.openpty()
    try:
        os.write(primary, answer.encode() + b"\n")
        return await run_taskq(prefix, *args, stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)


@pytest.fixture
def fixed() -> dict[str, bool]:
    return {"fragile": False}


@pytest.fixture
def runs() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def app(
    prefix: str, topology_cleanup: set[str], fixed: dict[str, bool], runs: list[tuple[str, int]]
) -> App:
    app = App("dlqcli", broker=BROKER, prefix=prefix)

    @app.task
    async def fragile(n: int) -> int:
        runs.append(("fragile", current().attempt))
        if not fixed["fragile"]:
            raise RuntimeError(f"fragile {n} broke")
        return n

    @app.task
    async def refuse() -> None:
        runs.append(("refuse", current().attempt))
        raise Reject("bad input")

    @app.task
    async def quick() -> None:
        runs.append(("quick", current().attempt))

    return app


async def populate(app: App) -> dict[str, str]:
    """Three dead messages, in this order: max-attempts, rejected, expired (by the broker).
    Returns their task IDs by reason."""
    async with running_worker(app):
        failed = await app.tasks["fragile"].delay(7)
        await eventually(lambda: dead_count(app, 1), what="fragile in .dead")
        rejected = await app.tasks["refuse"].delay()
        await eventually(lambda: dead_count(app, 2), what="refuse in .dead")
    expired = await app.tasks["quick"].options(expires=0.1).delay()
    await eventually(lambda: dead_count(app, 3), what="the expired message in .dead")
    return {"max-attempts": failed.id, "rejected": rejected.id, "expired": expired.id}


async def dead_count(app: App, count: int) -> bool:
    return await queue_length(app.names.dead_queue("default")) == count


async def test_dlq_list_shows_every_reason_and_leaves_the_queue_as_it_was(app: App) -> None:
    async with app:
        ids = await populate(app)
        before = [m.message_id for m in await queue_messages("", app.names.dead_queue("default"))]
    prefix = app.settings.prefix

    table = await run_taskq(prefix, "dlq", "list", "default")
    assert table.code == 0, table.err
    header, *rows, summary = table.out.splitlines()
    assert header.split()[:3] == ["TASK", "ID", "NAME"]
    assert [row.split()[:3] for row in rows] == [
        [ids["max-attempts"], "fragile", "max-attempts"],
        [ids["rejected"], "refuse", "rejected"],
        [ids["expired"], "quick", "expired"],
    ]
    assert "RuntimeError: fragile 7 broke" in rows[0]
    assert header.index("REASON") == rows[0].index("max-attempts")  # aligned columns
    assert summary.startswith("3 message(s)")

    listed = await run_taskq(prefix, "dlq", "list", "default", "--json")
    assert listed.code == 0, listed.err
    entries = json.loads(listed.out)
    assert [e["task_id"] for e in entries] == before == list(ids.values())
    by_reason = {e["reason"]: e for e in entries}
    assert by_reason["max-attempts"]["error"] == "RuntimeError: fragile 7 broke"
    assert "raise RuntimeError" in by_reason["max-attempts"]["traceback"]
    assert by_reason["rejected"]["error"] == "taskq.Reject: bad input"
    assert by_reason["expired"]["error_type"] == "taskq.Expired"
    for entry in entries:
        assert entry["attempts"] == 1
        dead_at = dt.datetime.fromisoformat(entry["dead_at"])
        assert abs((dt.datetime.now(dt.UTC) - dead_at).total_seconds()) < 120

    after = [m.message_id for m in await queue_messages("", app.names.dead_queue("default"))]
    assert after == before  # nothing lost, nothing reordered


async def test_dlq_replay_by_reason_id_and_all(
    app: App, fixed: dict[str, bool], runs: list[tuple[str, int]]
) -> None:
    prefix = app.settings.prefix
    work, dead = app.names.work_queue("default"), app.names.dead_queue("default")
    async with app:
        ids = await populate(app)
        runs.clear()

        by_reason = await run_taskq(prefix, "dlq", "replay", "default", "--reason", "rejected")
        assert by_reason.code == 0, by_reason.err
        assert "replayed 1 message(s)" in by_reason.out
        by_id = await run_taskq(prefix, "dlq", "replay", "default", "--id", ids["max-attempts"])
        assert by_id.code == 0, by_id.err
        assert "replayed 1 message(s)" in by_id.out
        assert [m.message_id for m in await queue_messages("", dead)] == [ids["expired"]]

        replayed = await queue_messages("", work)
        assert [m.message_id for m in replayed] == [ids["rejected"], ids["max-attempts"]]
        for message in replayed:
            assert {"a", "d"}.isdisjoint(meta_of(message.body))  # attempt 1, deliveries 0
            assert H_REASON not in message.headers and "x-death" not in message.headers

        unknown, nothing_said = await asyncio.gather(
            run_taskq(prefix, "dlq", "replay", "default", "--id", "no-such-id"),
            run_taskq(prefix, "dlq", "replay", "default"),
        )
        assert unknown.code == 1 and "no-such-id" in unknown.err
        assert nothing_said.code == 2 and "--all" in nothing_said.err

        fixed["fragile"] = True
        async with running_worker(app):
            await eventually(lambda: dead_count(app, 2), what="refuse back in .dead")

            async def both_ran() -> bool:
                return len(runs) == 2

            await eventually(both_ran, what="both replayed tasks to run")
        assert sorted(runs) == [("fragile", 1), ("refuse", 1)]

        everything = await run_taskq(prefix, "dlq", "replay", "default", "--all")
        assert everything.code == 0, everything.err
        assert "replayed 2 message(s)" in everything.out
        assert await queue_length(dead) == 0
        replayed = await queue_messages("", work)
    assert [m.message_id for m in replayed] == [ids["expired"], ids["rejected"]]
    assert "exp" not in meta_of(replayed[0].body)  # replaying an expired task makes it run


async def test_purge_asks_and_refuses_without_a_terminal(app: App) -> None:
    prefix = app.settings.prefix
    work, dead = app.names.work_queue("default"), app.names.dead_queue("default")
    async with app:
        await populate(app)
        for n in range(4):
            await app.tasks["fragile"].delay(n)
    assert (await queue_length(work), await queue_length(dead)) == (4, 3)

    # None of these deletes anything, so they may run at once.
    refused, declined, refused_dead, missing = await asyncio.gather(
        run_taskq(prefix, "purge", "default"),
        taskq_answering(prefix, "n", "purge", "default"),
        run_taskq(prefix, "dlq", "purge", "default"),
        run_taskq(prefix, "dlq", "list", "nosuchqueue"),
    )
    assert refused.code == 2 and "--yes" in refused.err
    assert declined.code == 2 and "delete 4 ready message(s)" in declined.err
    assert refused_dead.code == 2 and "--yes" in refused_dead.err
    assert missing.code == 2 and "does not exist" in missing.err
    assert (await queue_length(work), await queue_length(dead)) == (4, 3)

    confirmed = await taskq_answering(prefix, "y", "dlq", "purge", "default")
    assert confirmed.code == 0, confirmed.err
    assert f"purged 3 message(s) from {dead}" in confirmed.out
    forced = await run_taskq(prefix, "purge", "default", "--yes")
    assert forced.code == 0, forced.err
    assert f"purged 4 message(s) from {work}" in forced.out
    assert (await queue_length(work), await queue_length(dead)) == (0, 0)


async def test_listing_many_messages_keeps_all_of_them_in_order(app: App) -> None:
    """basic.get is not bounded by the channel's prefetch: a long .dead queue lists whole."""
    names = app.names
    async with app:
        await app.transport.declare_work_queue("default")
        for n in range(300):
            message = OutgoingMessage(body=b"\x92\x90\x80", message_id=f"m{n}", type="t")
            await app.transport.publish(names.dlx, "default", message)
        listed = await dlq.list_dead(app.transport, "default")
        again = await dlq.list_dead(app.transport, "default")
    assert [d.task_id for d in listed] == [f"m{n}" for n in range(300)]
    assert [d.task_id for d in again] == [d.task_id for d in listed]
    assert {d.reason for d in listed} == {"unknown"}
    # A reject has no reply: the broker may still be putting the last ones back.
    await eventually(lambda: dead_count(app, 300), what="all 300 back in .dead")
