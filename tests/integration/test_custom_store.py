"""App(results=store): a store object of the user's, shared by the App and its workers."""

from __future__ import annotations

import pytest

from taskq import App, TaskStatus
from tests.integration.test_result_store_contract import memory_store
from tests.support import BROKER, running_worker


class CountingStore(memory_store.MemoryStore):  # type: ignore[misc,name-defined]
    opens = 0
    closes = 0

    async def open(self) -> None:
        self.opens += 1
        await super().open()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


@pytest.mark.usefixtures("topology_cleanup")
async def test_one_store_object_serves_the_app_and_its_worker(prefix: str) -> None:
    store = CountingStore()
    app = App("custom", broker=BROKER, prefix=prefix, results=store)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        async with running_worker(app):
            handle = await add.delay(1, 2)
            assert await handle.result(timeout=10) == 3
            assert store.opens == 1  # opened by the App, shared with the worker
        assert store.closes == 0  # the worker is done with it; the App is not
        assert (await app.handle(handle.id).info()).status is TaskStatus.SUCCESS
    assert (store.opens, store.closes) == (1, 1)
    async with app:  # an App opened again opens its store again
        state = await app.store.get(handle.id)
        assert state is not None and (state.status, state.result) == (TaskStatus.SUCCESS, 3)
    assert (store.opens, store.closes) == (2, 2)
