"""With the AMQP result store (the default), only the sender learns a task's outcome: a lookup
by ID from another process raises ResultUnavailable, saying a durable store is needed,
instead of answering PENDING forever (issue 19)."""

from __future__ import annotations

import asyncio

import pytest

from taskq import App, ResultUnavailable, TaskStatus
from tests.support import BROKER, running_worker


def make_app(name: str, prefix: str) -> App:
    app = App(name, broker=BROKER, prefix=prefix)  # results: the AMQP store

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app


def _says_why(error: ResultUnavailable) -> None:
    text = str(error)
    assert "not sent by this process" in text
    assert "durable" in text and "redis" in text and "postgres" in text


async def test_a_task_sent_by_another_process_cannot_be_looked_up(
    prefix: str, topology_cleanup: set[str]
) -> None:
    sender, other = make_app("sender", prefix), make_app("other", prefix)
    async with running_worker(sender):
        handle = await sender.tasks["add"].delay(2, 3)
        assert await handle.result(timeout=20) == 5
        # The sender can look its own task up by ID.
        assert await sender.handle(handle.id, "add").status() is TaskStatus.SUCCESS
        async with other:
            elsewhere = other.handle(handle.id, "add")
            with pytest.raises(ResultUnavailable) as status:
                await elsewhere.status()
            _says_why(status.value)
            with pytest.raises(ResultUnavailable) as info:
                await elsewhere.info()
            _says_why(info.value)
            with pytest.raises(ResultUnavailable) as result:
                await elsewhere.result(timeout=5)
            _says_why(result.value)

        client = make_app("sync", prefix).sync

        def look_up() -> list[BaseException]:
            failures: list[BaseException] = []
            with client:
                looked_up = client.handle(handle.id, "add")
                for call in (looked_up.status, looked_up.info, lambda: looked_up.result(5)):
                    try:
                        call()
                    except ResultUnavailable as exc:
                        failures.append(exc)
            return failures

        failures = await asyncio.to_thread(look_up)
        assert len(failures) == 3, failures
        for failure in failures:
            assert isinstance(failure, ResultUnavailable)
            _says_why(failure)
