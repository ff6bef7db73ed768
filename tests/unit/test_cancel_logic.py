"""Cancellation without a broker: revocations and their expiry, a run's scope, the revocations
stream topology, and the whole path in memory mode (``memory://``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from taskq import App, DecodeError, TaskCancelled, TaskStatus
from taskq.cancel import Revocation, Revoker, RunScope
from taskq.cancel.revocation import Revoked
from taskq.testing.memory import dead_letters
from taskq.testing.polling import eventually
from taskq.topology import Names, revocation_stream_arguments


def test_a_revocation_round_trips_and_refuses_what_is_not_one() -> None:
    revocation = Revocation.new("t1", "why", 60)
    assert Revocation.from_dict(revocation.to_dict()) == revocation
    assert revocation.to_message().message_id == "t1"
    for bad in (None, [], {"task_id": "t1"}, {**revocation.to_dict(), "at": "soon"}):
        with pytest.raises(DecodeError):
            Revocation.from_dict(bad)


def test_expired_revocations_are_not_in_force() -> None:
    revoked = Revoked()
    now = time.time()
    assert revoked.add(Revocation("live", "", now, now + 60))
    assert not revoked.add(Revocation("old", "", now - 120, now - 60))
    assert not revoked.add(Revocation("live", "again", now, now + 60))  # known already
    assert revoked.get("live") is not None and revoked.get("old") is None
    revoked.add(Revocation("soon", "", now, now + 0.0001))
    time.sleep(0.001)
    assert revoked.prune() == 1 and len(revoked) == 1


def test_the_stream_keeps_revocations_for_the_expiry_in_small_segments() -> None:
    arguments = revocation_stream_arguments(7 * 86400)
    assert arguments["x-queue-type"] == "stream"
    assert arguments["x-max-age"] == "604800s"
    assert arguments["x-stream-max-segment-size-bytes"] <= 10_000_000


def test_a_workflow_roots_cancel_reaches_its_steps_running_or_not() -> None:
    revoker = Revoker(Names("p"), 3600.0)
    step, other, plain = RunScope("s1", "root"), RunScope("s2", "another"), RunScope("t1")
    for scope in (step, other, plain):
        revoker.running(scope)
    revoker.revoke(Revocation.new("root", "withdrawn", 3600.0))
    assert step.reason == "withdrawn" and not other.cancelled and not plain.cancelled
    assert revoker.revoked("s3", "root") == "withdrawn"  # a step of it that comes later
    assert revoker.revoked("s3", "another") is None and revoker.revoked("root") == "withdrawn"
    for scope in (step, other, plain):
        revoker.ended(scope)
    late = RunScope("s4", "root")
    revoker.running(late)  # a step that starts after the cancel stops at once
    assert late.cancelled


async def test_a_scope_interrupts_only_an_async_run_inside_its_function() -> None:
    outside = RunScope("t1")
    outside.cancel("before")
    assert outside.cancelled and outside.reason == "before"
    outside.cancel("again")  # the first reason stays
    assert outside.reason == "before"

    scope = RunScope("t2")

    async def run() -> str:
        scope.enter(interruptible=True)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            scope.leave()
            return "absorbed" if scope.absorb() else "not ours"
        return "finished"

    task = asyncio.ensure_future(run())
    await asyncio.sleep(0)
    scope.cancel("stop")
    assert await task == "absorbed"
    assert task.cancelling() == 0  # taken back: the runner task runs on

    thread_scope = RunScope("t3")
    thread_scope.enter(interruptible=False)
    thread_scope.cancel("check")  # nothing to interrupt: the thread checks `cancelled`
    assert thread_scope.cancelled and thread_scope.absorb()


def memory_app() -> App:
    app = App("cancel", broker="memory://")

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def hold() -> None:
        await asyncio.sleep(60)

    return app


async def test_cancel_in_memory_mode() -> None:
    app = memory_app()
    async with app:
        delayed = await app.tasks["add"].options(countdown=0.05).delay(1, 2)
        done = await delayed.cancel(reason="memory")
        assert done.status is TaskStatus.CANCELLED
        with pytest.raises(TaskCancelled, match="memory"):
            await delayed.result(timeout=5)
        running = await app.tasks["hold"].delay()

        async def started() -> bool:
            return await running.status() is TaskStatus.STARTED

        await eventually(started, what="the task to start")
        await app.cancel(running.id, reason="stop")
        with pytest.raises(TaskCancelled, match="stop"):
            await running.result(timeout=5)
        assert await (await app.tasks["add"].delay(2, 2)).result(timeout=5) == 4
    assert dead_letters(app) == []
