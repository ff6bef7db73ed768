"""The sync facade: blocking calls from plain threads, its own loop thread, clean shutdown.

The worker runs on the test's event loop; the facade's calls are made from other threads (as
Flask or a script would), through a second App object with the same prefix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator

import pytest

from taskq import (
    App,
    LifecycleError,
    ResultTimeout,
    ResultUnavailable,
    TaskFailed,
    TaskStatus,
)
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.support import BROKER, eventually, running_worker


def make_app(prefix: str, results: str = REDIS) -> App:
    app = App("sync", broker=BROKER, prefix=prefix, results=results)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)

    return app


@pytest.fixture
async def worker_app(prefix: str, topology_cleanup: set[str]) -> AsyncIterator[App]:
    app = make_app(prefix)
    async with running_worker(app):
        yield app
    await delete_redis_keys(prefix)


def sync_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("taskq-sync")}


async def test_send_and_wait_from_eight_threads(worker_app: App, prefix: str) -> None:
    client_app = make_app(prefix)
    add = client_app.tasks["add"]

    def caller(n: int) -> list[int]:
        handles = [client_app.sync.send(add, n, i) for i in range(5)]
        handles.append(client_app.sync.send("add", n, 100))  # by name
        return [h.result(timeout=20) for h in handles]

    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [asyncio.wrap_future(pool.submit(caller, n)) for n in range(8)]
            results = await asyncio.gather(*futures)
        assert results == [[n + i for i in range(5)] + [n + 100] for n in range(8)]
        assert len(sync_threads()) == 1  # one loop thread, however many callers
    finally:
        await asyncio.to_thread(client_app.sync.close)
    assert not client_app.is_open


async def test_lookup_failure_and_status_by_id(worker_app: App, prefix: str) -> None:
    client_app = make_app(prefix)

    client = client_app.sync

    def scenario() -> tuple[str, TaskStatus, int]:
        with client:
            sent = client.send(client_app.tasks["add"], 2, 3)
            looked_up = client.handle(sent.id, "add")
            value = looked_up.result(timeout=20)
            failing = client.send("boom", "kaput")
            with pytest.raises(TaskFailed) as failed:
                failing.handle.result_sync(timeout=20)
            return failed.value.remote_message, looked_up.status(), value

    message, status, value = await asyncio.to_thread(scenario)
    assert (message, status, value) == ("kaput", TaskStatus.SUCCESS, 5)
    assert not client_app.is_open
    assert not sync_threads()
    assert client.closed
    with pytest.raises(LifecycleError, match="closed"):
        await asyncio.to_thread(client.send, "add", 1, 2)
    assert client_app.sync is not client  # a closed client is replaced


async def test_close_releases_a_waiting_caller(worker_app: App, prefix: str) -> None:
    client_app = make_app(prefix)
    client = client_app.sync
    waiting = await asyncio.to_thread(client.handle, "never-sent")
    outcome: concurrent.futures.Future[BaseException] = concurrent.futures.Future()

    def wait() -> None:
        try:
            waiting.result(timeout=60)
        except BaseException as exc:
            outcome.set_result(exc)

    thread = threading.Thread(target=wait)
    thread.start()

    async def caller_waiting() -> bool:
        return len(client._calls) == 1

    await eventually(caller_waiting, what="the caller to wait")
    await asyncio.to_thread(client.close)
    error = await asyncio.wrap_future(outcome)
    await asyncio.to_thread(thread.join, 10)
    assert isinstance(error, LifecycleError)
    assert not sync_threads()


async def test_a_wait_past_its_timeout_raises_result_timeout(worker_app: App, prefix: str) -> None:
    """ResultTimeout is a TimeoutError, as the facade's own poll timeout is since Python 3.11:
    the facade once took it for its own and waited again, forever."""
    client = make_app(prefix).sync
    try:
        waiting = await asyncio.to_thread(client.handle, "never-sent")
        with pytest.raises(ResultTimeout):
            await asyncio.wait_for(asyncio.to_thread(waiting.result, timeout=0.2), timeout=20)
    finally:
        await asyncio.to_thread(client.close)


async def test_result_sync_on_its_own_loop_is_refused(worker_app: App) -> None:
    assert worker_app.is_open  # the in-process worker lends it its connections
    handle = await worker_app.tasks["add"].delay(1, 1)
    with pytest.raises(LifecycleError, match="block"):
        handle.result_sync(timeout=1)
    assert await handle.result(timeout=20) == 2


async def test_redis_down_at_start_raises_in_the_calling_thread(prefix: str) -> None:
    client_app = make_app(prefix, results="redis://:pw@127.0.0.1:1/0")
    with pytest.raises(ResultUnavailable) as failed:
        await asyncio.to_thread(client_app.sync.send, "add", 1, 2)
    assert "pw@" not in str(failed.value)
    assert "redis://:***@127.0.0.1:1/0" in str(failed.value)
    assert not sync_threads()
    assert not client_app.is_open
