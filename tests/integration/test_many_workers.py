"""Several in-process workers share one queue: every task runs once and each worker takes some."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from taskq import App
from tests.support import BROKER, queue_length, running_worker

TASKS = 300


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("many", broker=BROKER, prefix=prefix)

    @app.task
    async def square(x: int) -> int:
        await asyncio.sleep(0)  # yield, so a worker interleaves its tasks
        return x * x

    return app


@pytest.mark.idle_extra_queue  # it adds up what the workers ran
async def test_three_workers_share_three_hundred_tasks(app: App) -> None:
    square = app.tasks["square"]
    async with app, contextlib.AsyncExitStack() as stack:
        # A small prefetch makes the broker spread deliveries round-robin over the consumers
        # instead of letting the first one hold a large share of the backlog.
        workers = [
            await stack.enter_async_context(running_worker(app, name=f"w{i}", concurrency=4))
            for i in range(3)
        ]
        handles = await asyncio.gather(*(square.delay(i) for i in range(TASKS)))
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))

        assert results == [i * i for i in range(TASKS)]
        assert len({h.id for h in handles}) == TASKS
        succeeded = [w.counters.succeeded for w in workers]
        assert sum(succeeded) == TASKS, succeeded
        assert all(n > 0 for n in succeeded), f"a worker ran nothing: {succeeded}"
        assert all(w.counters.failed == 0 and w.counters.dead_lettered == 0 for w in workers)
        assert await queue_length(app.names.work_queue("default")) == 0
        assert await queue_length(app.names.dead_queue("default")) == 0
