"""Cancelling workflows against the real broker: a cancelled step ends the workflow's handle at
once (TaskCancelled naming the step), and cancelling a workflow's root cancels its members
that have not finished, running or queued (docs/guide/cancellation.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from taskq import App, TaskCancelled, TaskStatus, Worker
from taskq.workflow import chord, group
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.integration.test_workflows import Calls, make_app
from tests.support import eventually, running_worker

pytestmark = [pytest.mark.one_queue_only, pytest.mark.usefixtures("topology_cleanup")]

# Short enough that a handle left waiting fails the test soon, long enough for a busy machine.
TIMEOUT = 15
HOLD = 60.0  # a held step runs this long unless it is cancelled


@pytest.fixture(params=["redis", "amqp"])
async def results(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[str]:
    """The result store of the test: a chain's handle must end with either."""
    yield REDIS if request.param == "redis" else "amqp"
    if request.param == "redis":
        await delete_redis_keys(prefix)


@pytest.fixture
async def redis_results(prefix: str) -> AsyncIterator[str]:
    """Redis, for the chords (their join needs a durable store)."""
    yield REDIS
    await delete_redis_keys(prefix)


def cancel_app(prefix: str, results: str, calls: Calls) -> App:
    """The workflow tests' tasks, and ``hold``: runs until it is cancelled (its cleanup is
    logged as ``stopped``)."""
    app = make_app(prefix, results, calls)

    @app.task
    async def hold(x: int) -> int:
        calls.log.append(("hold", x))
        try:
            await asyncio.sleep(HOLD)
        except asyncio.CancelledError:
            calls.log.append(("stopped", x))
            raise
        return x

    return app


async def running(worker: Worker, name: str, count: int = 1) -> list[str]:
    """The IDs of ``count`` tasks named ``name`` once they run in ``worker``."""

    async def found() -> list[str] | None:
        ids = [a.task_id for a in worker.active.values() if a.task_name == name]
        return ids if len(ids) >= count else None

    result: list[str] = await eventually(found, what=f"{count} {name} task(s) to run")
    return result


async def test_a_cancelled_running_chain_step_ends_the_handle_naming_it(
    prefix: str, results: str
) -> None:
    calls = Calls()
    app = cancel_app(prefix, results, calls)
    t = app.tasks
    async with app, running_worker(app, concurrency=2) as worker:
        handle = await (t["add"].s(1, 1) | t["hold"].s() | t["double"].s()).delay()
        (step,) = await running(worker, "hold")
        await app.cancel(step, reason="enough")
        with pytest.raises(TaskCancelled) as cancelled:
            await handle.result(timeout=TIMEOUT)
    assert cancelled.value.task_id == handle.id
    assert f"workflow step hold[{step}] was cancelled: enough" in str(cancelled.value)
    assert calls.of("stopped") == [2] and calls.of("double") == []


async def test_a_chain_step_cancelled_before_it_is_sent_ends_the_handle(
    prefix: str, results: str
) -> None:
    calls = Calls()
    app = cancel_app(prefix, results, calls)
    t = app.tasks
    step = str(uuid.uuid4())
    async with app, running_worker(app, concurrency=2):
        await app.cancel(step, reason="not this one")  # an ID not sent yet stays revoked
        flow = t["add"].s(1, 1) | t["double"].s().options(task_id=step) | t["double"].s()
        handle = await flow.delay()
        with pytest.raises(TaskCancelled, match=rf"double\[{step}\] was cancelled: not this one"):
            await handle.result(timeout=TIMEOUT)
    assert calls.of("add") == [(1, 1)] and calls.of("double") == []


async def test_cancelling_the_root_cancels_the_members_that_have_not_finished(
    prefix: str, redis_results: str
) -> None:
    calls = Calls()
    app = cancel_app(prefix, redis_results, calls)
    t = app.tasks
    # Two held members take both slots; the three others wait in the queue.
    members = [t["hold"].s(1), t["hold"].s(2), *(t["double"].s(i) for i in range(3))]
    async with app, running_worker(app, concurrency=2) as worker:
        flow = t["add"].s(1, 1) | chord(group(members), t["total"].s())
        handle = await flow.delay()
        await running(worker, "hold", 2)
        (root,) = handle.roots
        done = await app.cancel(root, reason="the order was withdrawn")
        assert done.status is TaskStatus.SUCCESS  # the root had finished: its steps did not
        with pytest.raises(TaskCancelled, match="the order was withdrawn"):
            await handle.result(timeout=TIMEOUT)

        async def idle() -> bool:
            return not worker.active and worker.counters.cancelled >= 5

        await eventually(idle, what="every member to be cancelled")
    assert sorted(calls.of("stopped")) == [1, 2]
    assert calls.of("double") == [] and calls.of("total") == []


async def test_a_workflow_handle_cancels_the_whole_workflow(
    prefix: str, redis_results: str
) -> None:
    calls = Calls()
    app = cancel_app(prefix, redis_results, calls)
    t = app.tasks
    async with app, running_worker(app, concurrency=3) as worker:
        handle = await chord(group(t["hold"].s(i) for i in range(3)), t["total"].s()).delay()
        await running(worker, "hold", 3)
        assert len(handle.roots) == 3
        done = await handle.cancel(reason="stop it all", wait=True)
        assert all(d.cancelled and d.stopped for d in done)
        with pytest.raises(TaskCancelled, match="stop it all"):
            await handle.result(timeout=TIMEOUT)
    assert sorted(calls.of("stopped")) == [0, 1, 2] and calls.of("total") == []
