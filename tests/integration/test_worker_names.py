"""Worker names are their exclusive control queues: two workers of a process get names of
their own, and a name already in use is a clear error before any delivery is taken."""

from __future__ import annotations

import asyncio

import pytest

from taskq import App, ConfigurationError, Worker
from taskq.testing.polling import eventually
from tests.support import BROKER, running_worker


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("names", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app


@pytest.mark.idle_extra_queue  # it counts what each worker ran: no noise on the extra queue
async def test_two_default_workers_in_one_process_both_serve(app: App) -> None:
    async with app, running_worker(app) as first, running_worker(app) as second:
        assert first.name != second.name
        assert first.queues == second.queues
        handles = [await app.tasks["add"].delay(i, 1) for i in range(40)]
        assert [await h.result(timeout=15) for h in handles] == [i + 1 for i in range(40)]

        async def all_counted() -> list[int]:
            served = [first.counters.succeeded, second.counters.succeeded]
            return served if sum(served) == 40 else []

        # Both consume the same queue before the first send: RabbitMQ deals the tasks out
        # to them in turn, so each runs some (a worker on another queue would run none).
        served = await eventually(all_counted, what="40 tasks counted by the two workers")
        assert min(served) > 0, f"tasks run by each worker: {served}"


async def test_a_name_in_use_is_refused_before_any_delivery(app: App) -> None:
    async with app, running_worker(app, name="same") as first:
        await app.tasks["add"].delay(1, 1)
        twin = Worker(app, name="same", queues=first.queues)
        # The error itself, not wrapped in the ExceptionGroup of the worker's TaskGroup.
        with pytest.raises(ConfigurationError, match="'same' already runs"):
            await asyncio.wait_for(twin.run(), timeout=20)
        assert twin.counters.received == 0
