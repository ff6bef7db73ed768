"""Connections closed by the broker (``rabbitmqctl close_connection``): the worker and the
client reconnect, re-declare what they need, and go on with nothing lost.

taskq names its connections through the ``connection_name`` client property:
``taskq-worker:<worker name>:consume|publish`` and ``taskq:<app name>:consume|publish``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from taskq import App, ResultTimeout, TaskHandle, TaskStatus
from tests.support import BROKER, WorkerProcess, eventually, running_worker

APP = "tests.apps.procapp:app"
pytestmark = pytest.mark.slow


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def connection_pids(name_prefix: str, expected: int) -> list[str]:
    """The pids of the connections whose connection_name starts with ``name_prefix``; there
    must be ``expected`` of them (rabbitmqctl close_connection takes a pid, not a name)."""
    listing = await _rabbitmqctl(
        "list_connections", "pid", "client_properties", "-q", "--no-table-headers"
    )
    wanted = f'{{"connection_name","{name_prefix}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if wanted in line]
    assert len(pids) == expected, listing
    return pids


async def close_connections(pids: list[str]) -> None:
    """Close connections from the broker side, as an operator or a node restart would."""
    await asyncio.gather(*(_rabbitmqctl("close_connection", pid, "test") for pid in pids))


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    # The app name is unique so that its connection names are too.
    return App(f"c{prefix}", broker=BROKER, prefix=prefix)


async def _send_many(client: App, n: int, seconds: float, base: int) -> list[TaskHandle[int]]:
    return [await client.send("sleepy", seconds, base + i) for i in range(n)]


async def test_worker_reconnects_with_tasks_in_flight_and_after(prefix: str, client: App) -> None:
    worker_name = f"{prefix}-w"
    worker = WorkerProcess(APP, prefix, "--concurrency", "10", "--name", worker_name)
    try:
        await worker.wait_ready()
        pids = await connection_pids(f"taskq-worker:{worker_name}:", expected=2)
        async with client:
            in_flight = await _send_many(client, 20, 1.5, 0)

            async def some_started() -> bool:
                return any([await h.status() is TaskStatus.STARTED for h in in_flight])

            await eventually(some_started, what="tasks in flight")
            await close_connections(pids)
            # Tasks whose channel died still finish; their acks fail and the broker redelivers
            # them, so they may run twice: each still ends in exactly one SUCCESS at the client.
            assert [await h.result(timeout=60) for h in in_flight] == list(range(20))
            later = await _send_many(client, 20, 0.0, 100)
            assert [await h.result(timeout=60) for h in later] == list(range(100, 120))
        assert worker.process.poll() is None, worker.output()  # it reconnected, never exited
    finally:
        worker.kill()


async def _send_and_get(client: App, tag: int) -> bool:
    handle = await client.send("sleepy", 0.0, tag)
    try:
        return await handle.result(timeout=2) == tag
    except ResultTimeout:
        return False


async def test_client_reconnects_and_keeps_its_reply_queue(prefix: str, client: App) -> None:
    @client.task
    async def sleepy(seconds: float, tag: int) -> int:
        await asyncio.sleep(seconds)
        return tag

    async with client, running_worker(client, concurrency=4) as worker:
        assert await (await client.send("sleepy", 0.0, 1)).result(timeout=10) == 1
        reply_queue = client.store.reply_to()
        pids = await connection_pids(f"taskq:{client.name}:", expected=2)
        closing = asyncio.create_task(close_connections(pids))
        # Keep sending while the broker closes the connections and until they are back: a send
        # interrupted by the close waits for the reconnect and is retried; it does not fail.
        during: list[TaskHandle[int]] = []
        while not closing.done() or not client.transport.connected:
            during.append(await client.send("sleepy", 0.0, len(during)))
            await asyncio.sleep(0.01)  # pacing the sends, not waiting for the broker
        await closing

        async def all_ran() -> bool:
            return worker.counters.succeeded >= 1 + len(during)  # duplicates allowed

        await eventually(all_ran, timeout=30, what=f"the {len(during)} tasks sent meanwhile")
        # Their results may be lost, though: a reply published while the client's consume
        # connection is down is dropped, because the reply queue is exclusive (the broker
        # deletes it with the connection) and the AMQP result store only serves a connected
        # sender (the Redis store keeps results). The robust connection re-declares the queue
        # under the same name; from then on replies arrive. So: send until a send and its
        # result both succeed, within a deadline.
        deadline = time.monotonic() + 30
        tag = 1000
        while not await _send_and_get(client, tag):
            assert time.monotonic() < deadline, "the client did not recover within 30 s"
            tag += 1
        assert client.store.reply_to() == reply_queue
        later = await _send_many(client, 10, 0.0, 200)
        assert [await h.result(timeout=30) for h in later] == list(range(200, 210))
