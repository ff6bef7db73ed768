"""Retries through the delay levels, final failures kept in .dead, Reject, give_up_on, expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from taskq import App, Reject, Retry, RetryPolicy, TaskFailed, TaskStatus, current
from taskq.message import H_ERROR_MESSAGE, H_ERROR_TYPE, H_REASON, H_TRACEBACK
from tests.support import (
    BROKER,
    eventually,
    meta_of,
    queue_length,
    queue_messages,
    running_worker,
)

FAST = RetryPolicy(max_attempts=5, delay=0.3, backoff=1.5, jitter=False)


@pytest.fixture
def calls() -> list[tuple[str, int]]:
    """(task name, attempt) of every run, in order."""
    return []


@pytest.fixture
def gates() -> dict[int, asyncio.Event]:
    """Events that let the ``pause`` task with that number end."""
    return {n: asyncio.Event() for n in (1, 2)}


@pytest.fixture
def app(
    prefix: str,
    topology_cleanup: set[str],
    calls: list[tuple[str, int]],
    gates: dict[int, asyncio.Event],
) -> App:
    app = App("retries", broker=BROKER, prefix=prefix)
    _register_flaky(app, calls, gates)

    @app.task(retry=RetryPolicy(max_attempts=2, delay=0.1, jitter=False))
    async def hopeless() -> None:
        calls.append(("hopeless", current().attempt))
        raise ValueError(f"still broken on attempt {current().attempt}")

    @app.task
    async def once() -> None:
        calls.append(("once", current().attempt))
        raise RuntimeError("no policy, one attempt")

    @app.task(retry=FAST)
    async def refuse() -> None:
        calls.append(("refuse", current().attempt))
        raise Reject("bad input")

    @app.task(retry=RetryPolicy(max_attempts=5, delay=0.1, give_up_on=(KeyError,)))
    async def lookup() -> None:
        calls.append(("lookup", current().attempt))
        raise KeyError("missing")

    @app.task
    async def quick() -> str:
        calls.append(("quick", current().attempt))
        return "ran"

    return app


def _register_flaky(
    app: App, calls: list[tuple[str, int]], gates: dict[int, asyncio.Event]
) -> None:
    """``flaky`` fails twice (an exception, then Retry) and succeeds on attempt 3; before each
    failure it queues a ``pause`` task that holds the worker until the test opens its gate."""

    @app.task(retry=FAST)
    async def flaky(x: int) -> int:
        attempt = current().attempt
        calls.append(("flaky", attempt))
        if attempt < 3:
            # Queued now, so it is delivered before the retry comes back from the delay
            # level: on a worker of concurrency 1 the next attempt waits until it ends.
            await pause.delay(attempt)
        if attempt == 1:
            raise ConnectionError("broker hiccup")
        if attempt == 2:
            raise Retry(delay=0.3, reason="not yet")
        return x * 2

    @app.task
    async def pause(n: int) -> None:
        calls.append(("pause", n))
        await gates[n].wait()


async def dead_messages(app: App, count: int) -> list[Any]:
    """Wait until the default .dead queue holds ``count`` messages; return them (left there)."""
    dead_queue = app.names.dead_queue("default")

    async def enough() -> list[Any] | None:
        messages = await queue_messages(app.settings.prefix, dead_queue)
        return messages if len(messages) >= count else None

    found = await eventually(enough, timeout=15, what=f"{count} message(s) in {dead_queue}")
    assert len(found) == count
    return found


async def test_retried_task_succeeds_on_attempt_3_showing_retrying(
    app: App, calls: list[tuple[str, int]], gates: dict[int, asyncio.Event]
) -> None:
    # One task at a time: while a ``pause`` task runs, the retried attempt waits, so its
    # RETRYING status stays visible until the test has seen it (no race with the retry).
    async with app, running_worker(app, concurrency=1):
        handle = await app.tasks["flaky"].delay(21)
        for attempt, error in [(1, "ConnectionError"), (2, "taskq.exceptions.Retry")]:

            async def retrying(attempt: int = attempt) -> tuple[object, ...] | None:
                info = await handle.info()
                entry = (info.status, info.attempt, info.error.type if info.error else None)
                return entry if entry[:2] == (TaskStatus.RETRYING, attempt) else None

            seen = await eventually(retrying, what=f"RETRYING after attempt {attempt}")
            assert seen == (TaskStatus.RETRYING, attempt, error)
            gates[attempt].set()
        assert await handle.result(timeout=30) == 42
    assert calls == [("flaky", 1), ("pause", 1), ("flaky", 2), ("pause", 2), ("flaky", 3)]
    info = await handle.info()
    assert (info.status, info.attempt) == (TaskStatus.SUCCESS, 3)


async def test_exhausted_retries_land_in_dead_with_the_last_traceback(
    app: App, calls: list[tuple[str, int]]
) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["hopeless"].delay()
        with pytest.raises(TaskFailed, match="attempt 2"):
            await handle.result(timeout=15)
        [dead] = await dead_messages(app, 1)
    assert calls == [("hopeless", 1), ("hopeless", 2)]
    assert dead.message_id == handle.id
    assert dead.headers[H_REASON] == "max-attempts"
    assert meta_of(dead.body)["a"] == 2
    assert dead.headers[H_ERROR_TYPE] == "ValueError"
    assert dead.headers[H_ERROR_MESSAGE] == "still broken on attempt 2"
    assert "raise ValueError" in dead.headers[H_TRACEBACK]


async def test_task_without_policy_fails_once_and_is_kept(
    app: App, calls: list[tuple[str, int]]
) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["once"].delay()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=10)
        [dead] = await dead_messages(app, 1)
    assert calls == [("once", 1)]
    assert dead.headers[H_REASON] == "max-attempts" and "a" not in meta_of(dead.body)


async def test_a_caller_who_sees_a_failure_finds_its_dead_letter_copy(app: App) -> None:
    # No polling: the copy must be in .dead before the failure is visible to the caller.
    dead_queue = app.names.dead_queue("default")
    async with app, running_worker(app, concurrency=8), await aio_pika.connect(BROKER) as peer:
        channel = await peer.channel()
        handles = [await app.tasks[name].delay() for _ in range(15) for name in ("once", "refuse")]
        for seen, handle in enumerate(handles, start=1):
            with pytest.raises(TaskFailed):
                await handle.result(timeout=10)
            queue = await channel.declare_queue(dead_queue, passive=True)
            assert (queue.declaration_result.message_count or 0) >= seen


async def test_reject_dead_letters_at_once(app: App, calls: list[tuple[str, int]]) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["refuse"].delay()
        with pytest.raises(TaskFailed, match="bad input"):
            await handle.result(timeout=10)
        [dead] = await dead_messages(app, 1)
    assert calls == [("refuse", 1)]
    assert dead.headers[H_REASON] == "rejected"
    assert dead.headers[H_ERROR_MESSAGE] == "bad input"


async def test_give_up_on_does_not_retry(app: App, calls: list[tuple[str, int]]) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["lookup"].delay()
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=10)
        [dead] = await dead_messages(app, 1)
    assert failed.value.remote_type == "KeyError"
    assert calls == [("lookup", 1)]
    assert dead.headers[H_REASON] == "max-attempts"


@pytest.mark.idle_extra_queue  # it counts what its worker received
async def test_expired_while_waiting_in_the_work_queue(
    app: App, calls: list[tuple[str, int]]
) -> None:
    async with app:  # no worker: RabbitMQ expires it and dead-letters it itself
        handle = await app.tasks["quick"].options(expires=0.2).delay()
        [dead] = await dead_messages(app, 1)
        async with running_worker(app) as worker:
            # A task sent after it runs: the worker consumed the queue, and the expired one
            # was not in it.
            assert await (await app.tasks["quick"].delay()).result(timeout=10) == "ran"
            assert worker.counters.received == 1
    assert calls == [("quick", 1)]
    assert dead.message_id == handle.id
    assert H_REASON not in dead.headers  # the broker put it there, not taskq
    assert dead.headers["x-death"][0]["reason"] == "expired"


async def test_delayed_task_expired_before_arrival_is_dead_lettered(
    app: App, calls: list[tuple[str, int]]
) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["quick"].options(countdown=0.5, expires=0.1).delay()
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=10)
        [dead] = await dead_messages(app, 1)
    assert failed.value.remote_type == "taskq.Expired"
    assert calls == []
    assert dead.headers[H_REASON] == "expired"
    assert await handle.status() is TaskStatus.FAILURE


async def test_app_default_retry_applies_to_tasks_without_a_policy(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App(
        "default-retry", broker=BROKER, prefix=prefix,
        retry=RetryPolicy(max_attempts=3, delay=0.05, jitter=False),
    )  # fmt: skip
    attempts: list[int] = []

    @app.task
    async def wobbly() -> int:
        attempts.append(current().attempt)
        if current().attempt < 3:
            raise ConnectionError("again")
        return current().attempt

    @app.task(retry=RetryPolicy(max_attempts=1))
    async def strict() -> None:
        raise ConnectionError("no retries here")

    async with app, running_worker(app):
        assert await (await wobbly.delay()).result(timeout=20) == 3
        with pytest.raises(TaskFailed):
            await (await strict.delay()).result(timeout=20)
    assert attempts == [1, 2, 3]


async def test_a_retry_at_a_lower_priority_waits_behind_fresh_tasks(
    prefix: str, topology_cleanup: set[str]
) -> None:
    # Fresh work at priority 1, retries at 0: the retried attempt is queued first, yet the
    # fresh tasks sent after it run before it (with the task's own priority it would run
    # first: one queue, first in, first out).
    app = App("retry-priority", broker=BROKER, prefix=prefix, default_priority=1)
    calls: list[tuple[str, int]] = []
    gate = asyncio.Event()

    @app.task(retry=RetryPolicy(max_attempts=2, delay=0, jitter=False, priority=0))
    async def flaky() -> None:
        calls.append(("flaky", current().attempt))
        if current().attempt == 1:
            await hold.delay()  # holds the worker while the retry and fresh tasks queue up
            raise ConnectionError("downstream is down")

    @app.task
    async def hold() -> None:
        calls.append(("hold", current().attempt))
        await gate.wait()

    @app.task
    async def fresh(n: int) -> None:
        calls.append(("fresh", n))

    work_queue = app.names.work_queue("default")

    async def queued(count: int) -> bool:
        return len(calls) == 2 and await queue_length(work_queue) == count

    async with app, running_worker(app, concurrency=1):
        handle = await flaky.delay()
        await eventually(lambda: queued(1), what="the retry to wait in the work queue")
        assert calls == [("flaky", 1), ("hold", 1)]
        for n in range(3):
            await fresh.delay(n)
        await eventually(lambda: queued(4), what="the fresh tasks to queue behind the retry")
        gate.set()
        assert await handle.result(timeout=20) is None
    assert calls[2:] == [("fresh", 0), ("fresh", 1), ("fresh", 2), ("flaky", 2)]
