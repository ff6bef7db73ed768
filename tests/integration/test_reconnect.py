"""Connections closed by the broker (``rabbitmqctl close_connection``) or cut on the way (a TCP
proxy): the worker and the client reconnect, re-declare what they need, and go on with nothing
lost.

taskq names its connections through the ``connection_name`` client property:
``taskq-worker:<worker name>:consume|publish`` and ``taskq:<app name>:consume|publish``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from taskq import App, TaskHandle
from tests.broker_control import close_connections, connection_pids, consumed
from tests.runlog import RunLog
from tests.support import BROKER, WorkerProcess, broker_proxy, eventually, running_worker

APP = "tests.apps.procapp:app"
pytestmark = pytest.mark.slow


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    # The app name is unique so that its connection names are too.
    return App(f"c{prefix}", broker=BROKER, prefix=prefix)


async def _send_many(client: App, n: int, seconds: float, base: int) -> list[TaskHandle[int]]:
    return [await client.send("sleepy", seconds, base + i) for i in range(n)]


async def test_worker_reconnects_with_tasks_in_flight_and_after(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = RunLog(tmp_path)
    worker_name = f"{prefix}-w"
    worker = WorkerProcess(APP, prefix, "--concurrency", "10", "--name", worker_name)
    try:
        await worker.wait_ready()
        name = f"taskq-worker:{worker_name}:"
        pids = await asyncio.to_thread(connection_pids, name)
        assert len(pids) == 2
        async with client:
            handles = await runs.send(client, *range(20))
            in_flight, queued = handles[:10], handles[10:]
            await runs.wait_running(in_flight)
            assert await close_connections(name) == 2

            async def reconnected() -> bool:
                now = set(await asyncio.to_thread(connection_pids, name))
                return len(now) == 2 and not now & set(pids)

            await eventually(reconnected, timeout=60, what="the worker to connect again")
            assert runs.running() == {h.id for h in in_flight}  # still running, never stopped
            runs.release()
            # Every task ends in exactly one SUCCESS at the client.
            assert [await h.result(timeout=60) for h in handles] == list(range(20))
            await runs.wait_ended(len(handles) + len(in_flight))
            # The tasks in flight finished, but their acks died with the channel: the broker
            # delivered them again, and they ran a second time (at-least-once). The queued
            # ones ran once.
            assert runs.count("end") == {
                **{h.id: 2 for h in in_flight},
                **{h.id: 1 for h in queued},
            }
            later = await _send_many(client, 20, 0.0, 100)
            assert [await h.result(timeout=60) for h in later] == list(range(100, 120))
        assert worker.process.poll() is None, worker.output()  # it reconnected, never exited
    finally:
        worker.kill()


async def test_client_reconnects_and_keeps_its_reply_queue(
    prefix: str, topology_cleanup: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    worker_app = App("replier", broker=BROKER, prefix=prefix)

    @worker_app.task
    async def sleepy(seconds: float, tag: int) -> int:
        ran.append(tag)
        await asyncio.sleep(seconds)
        return tag

    caplog.set_level(logging.WARNING, logger="taskq.transport")
    async with broker_proxy() as proxy:
        # Only the client goes through the proxy: the worker stays connected throughout.
        client = App(f"c{prefix}", broker=proxy.amqp_url(), prefix=prefix)
        async with running_worker(worker_app, concurrency=4), client:
            assert await (await client.send("sleepy", 0.0, 1)).result(timeout=10) == 1
            reply_queue = client.store.reply_to()
            proxy.refuse()  # both connections drop, and cannot come back until restored
            sending = asyncio.ensure_future(client.send("sleepy", 0.0, 2))

            async def interrupted() -> bool:
                return "publish interrupted" in caplog.text

            # The send does not fail: it waits for the reconnect, and is retried.
            await eventually(interrupted, what="the send to be interrupted")
            assert not sending.done()
            proxy.restore()
            handle = await asyncio.wait_for(sending, timeout=60)
            # Its result arrives too: the reply queue outlives the client's consume connection
            # and keeps its name across the reconnect, so a reply published before the client
            # consumes again waits there (see the next test).
            assert await handle.result(timeout=30) == 2
            assert 2 in ran
            assert client.store.reply_to() == reply_queue
            later = await _send_many(client, 10, 0.0, 200)
            assert [await h.result(timeout=30) for h in later] == list(range(200, 210))


async def test_a_reply_published_while_the_caller_is_disconnected_still_arrives(
    prefix: str, topology_cleanup: set[str]
) -> None:
    gate = asyncio.Event()
    done: list[int] = []
    worker_app = App("replier", broker=BROKER, prefix=prefix)

    @worker_app.task
    async def gated(tag: int) -> int:
        await gate.wait()
        done.append(tag)
        return tag

    async with broker_proxy() as proxy:
        # Only the client goes through the proxy: the worker stays connected throughout.
        client = App("caller", broker=proxy.amqp_url(), prefix=prefix)
        async with running_worker(worker_app), client:
            handle = await client.send("gated", 7)
            reply_queue = client.store.reply_to() or ""
            proxy.refuse()
            await eventually(
                lambda: _gone(reply_queue), what="the broker to drop the client's reply queue"
            )
            gate.set()  # the task ends and its outcome is published now

            async def ended() -> bool:
                return done == [7]

            await eventually(ended, what="the task to end")
            proxy.restore()
            await eventually(
                lambda: consumed(reply_queue), timeout=60, what="the client to come back"
            )
            assert await handle.result(timeout=5) == 7


async def _gone(queue_name: str) -> bool:
    return not await consumed(queue_name)


async def test_a_worker_consumes_again_after_the_broker_cancels_its_consumer(
    prefix: str, client: App, caplog: pytest.LogCaptureFixture
) -> None:
    # Deleting a work queue makes the broker cancel its consumers (so does the loss of a
    # classic queue's node) while the connection stays up: the worker must not go on
    # looking alive without consuming.
    app = App(f"w{prefix}", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    caplog.set_level(logging.WARNING, "taskq.transport")
    async with app, running_worker(app, queues=["default"]):
        assert await (await add.delay(1, 2)).result(timeout=15) == 3
        await app.transport.delete_queue(app.names.work_queue("default"))

        async def stopped() -> bool:
            return "cancelled by the broker" in caplog.text

        await eventually(stopped, what="the broker to cancel the consumer")
        async with App(f"r{prefix}", broker=BROKER, prefix=prefix) as redeclarer:
            await redeclarer.transport.declare_work_queue("default")
        assert await (await add.delay(2, 2)).result(timeout=30) == 4


async def test_a_queue_that_cannot_be_consumed_after_a_reconnect_does_not_stop_the_others(
    prefix: str, topology_cleanup: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    # On a cluster, a classic queue (a worker's presence queue, a classic work queue) is
    # gone while its node is down: re-subscribing it fails. Staged here by deleting one of
    # the worker's queues while its connection is cut.
    topology_cleanup.update({"side"})
    async with broker_proxy() as proxy:
        app = App(f"w{prefix}", broker=proxy.amqp_url(), prefix=prefix)

        @app.task
        async def add(x: int, y: int) -> int:
            return x + y

        @app.task(queue="side")
        async def side(x: int) -> int:
            return x

        caplog.set_level(logging.WARNING, "taskq.transport")
        async with (
            App(f"c{prefix}", broker=BROKER, prefix=prefix) as client,
            app,
            running_worker(app, queues=["default", "side"]),
        ):
            proxy.refuse()
            proxy.cut()
            await client.transport.delete_queue(client.names.work_queue("side"))
            proxy.restore()
            assert await (await client.send("add", 2, 3)).result(timeout=30) == 5

            async def retried() -> bool:
                return "not consuming" in caplog.text

            await eventually(retried, what="the worker to retry the deleted queue alone")
            await client.transport.declare_work_queue("side")
            assert await (await client.send("side", 7)).result(timeout=60) == 7
