"""A task goes from delay() to an in-process worker and back as a typed result."""

from __future__ import annotations

import pytest

from taskq import App, TaskFailed, TaskStatus
from tests.support import BROKER, running_worker


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    app = App("t", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)

    return app


async def test_add_returns_ten(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["add"].delay(4, 6)
        assert await handle.result(timeout=10) == 10
        assert await handle.status() is TaskStatus.SUCCESS


async def test_failure_carries_remote_traceback(app: App) -> None:
    async with app, running_worker(app):
        handle = await app.tasks["boom"].delay("kaput")
        with pytest.raises(TaskFailed) as info:
            await handle.result(timeout=10)
        assert info.value.remote_type == "ValueError"
        assert info.value.remote_message == "kaput"
        assert "raise ValueError(message)" in info.value.remote_traceback
        assert await handle.status() is TaskStatus.FAILURE
