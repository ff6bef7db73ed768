"""Global rate limits against the real broker (taskq.limits.rate): the broker counts the
starts of a window, whichever worker starts them; a deferred task uses no attempt and does
not hold up other tasks. Windows of a minute keep the counts free of timing: nothing
deferred comes back within a test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from taskq import App, ConfigurationError, TaskStatus
from taskq.limits import RateLimit
from tests.support import BROKER, eventually, running_worker

DEADLINE = 30.0


def make_app(prefix: str, ran: list[str]) -> App:
    app = App("rates", broker=BROKER, prefix=prefix)

    @app.task(rate_limit="3/m")
    async def limited(tag: str) -> str:
        ran.append(tag)
        return tag

    @app.task(rate_limit="2/s")
    async def quick(tag: str) -> str:
        ran.append(tag)
        return tag

    @app.task
    async def free(tag: str) -> str:
        ran.append(tag)
        return tag

    return app


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
async def app(prefix: str, topology_cleanup: set[str], ran: list[str]) -> AsyncIterator[App]:
    """The test's App; its ticket queues are deleted afterwards (else ``x-expires`` would)."""
    app = make_app(prefix, ran)
    yield app
    async with app:
        for task in app.tasks.values():
            if task.config.rate_limit is not None:
                await app.transport.delete_queue(task.config.rate_limit.queue(app.names, task.name))


def test_rate_limits_parse() -> None:
    assert RateLimit.parse("100/s") == RateLimit(100, 1.0)
    assert RateLimit.parse("20/m") == RateLimit(20, 60.0)
    assert str(RateLimit.parse("500 / h")) == "500/h"
    for bad in ("0/s", "10", "10/d", "-1/s", "ten/s"):
        with pytest.raises(ConfigurationError):
            RateLimit.parse(bad)


async def test_starts_past_the_limit_are_deferred_without_using_an_attempt(
    app: App, ran: list[str]
) -> None:
    async with app, running_worker(app) as worker:
        handles = [await app.tasks["limited"].delay(f"t{i}") for i in range(5)]

        async def three_ran_two_deferred() -> bool:
            return len(ran) == 3 and worker.counters.deferred >= 2

        await eventually(three_ran_two_deferred, what="three starts and two deferrals")
        # A deferral blocks nothing: a task without a limit runs at once.
        assert await (await app.tasks["free"].delay("free")).result(timeout=DEADLINE) == "free"
        waiting = [h for h in handles if await h.status() is not TaskStatus.SUCCESS]
        assert len(waiting) == 2
        for handle in waiting:
            info = await handle.info()
            assert info.status is TaskStatus.PENDING and info.error is None
        assert worker.counters.failed == worker.counters.retried == 0
        for handle in waiting:  # not to wait a minute for the next window
            await handle.cancel(reason="done testing")


async def test_the_limit_holds_across_workers(app: App, ran: list[str]) -> None:
    async with app, running_worker(app) as one, running_worker(app) as two:
        handles = [await app.tasks["limited"].delay(f"t{i}") for i in range(8)]

        async def all_decided() -> bool:
            return len(ran) == 3 and one.counters.deferred + two.counters.deferred >= 5

        await eventually(all_decided, what="three starts and five deferrals")
        assert len(ran) == 3  # per worker it would have been six
        for handle in handles:
            await handle.cancel(reason="done testing")


async def test_deferred_tasks_come_back_and_run_on_their_first_attempt(
    app: App, ran: list[str]
) -> None:
    async with app, running_worker(app) as worker:
        handles = [await app.tasks["quick"].delay(f"q{i}") for i in range(5)]
        results = [await h.result(timeout=DEADLINE) for h in handles]
        assert results == [f"q{i}" for i in range(5)]
        assert [(await h.info()).attempt for h in handles] == [1] * 5
        assert worker.counters.retried == worker.counters.failed == 0
