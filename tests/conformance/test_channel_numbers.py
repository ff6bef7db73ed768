"""Channel numbers on a long-lived connection (issue 20, defect 2).

Every ``queue_depth`` and every control broadcast opens and closes a channel. Numbers must be
reused within the negotiated ``channel_max`` (16 bits at most: a client that never reuses them
fails every new channel after 65,535 opens), all of them in use must be a clear error that
leaves the connection up, and a publish the broker refuses (which closes the confirm channel)
must not fail the sends after it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.channel_churn import churn, refuse_then_send
from taskq import App, ChannelsExhausted
from taskq.control import LastSeen
from taskq.transport import QueueDepth
from tests.broker_control import channels_of, connection_pids, consumed
from tests.support import BROKER, adding_app, eventually, running_worker

pytestmark = pytest.mark.one_queue_only  # no worker: the client's connections are under test
NATIVE_ONLY = "channel-number bookkeeping of the native client"


async def open_app(app: App) -> str:
    """Open ``app`` and declare its default queue (a send does); return the name of its
    publishing connection."""
    await app.open(connection_name=f"taskq-test:{app.names.prefix}")
    await app.send("add", 0, 0)
    return f"taskq-test:{app.names.prefix}:publish"


async def test_numbers_are_reused_within_a_small_channel_max(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    # 32 numbers for 3,000 opens: without reuse the 33rd open would find none.
    app = App("channels", broker=BROKER, prefix=prefix, channel_max=32)
    await open_app(app)
    try:
        broadcasts = await churn(app, 3000, 8, 100, LastSeen(BROKER, prefix, str(tmp_path)))
        assert broadcasts == 30
        await refuse_then_send(app, 10)
    finally:
        await app.close()


async def test_all_numbers_in_use_is_a_clear_error_and_the_connection_stays(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = App("channels", broker=BROKER, prefix=prefix, channel_max=8)
    publishing = await open_app(app)
    try:
        (connection,) = connection_pids(publishing)
        queue = app.names.work_queue("default")
        # 40 at once on 8 numbers (a few already held by the publish and declare channels).
        results = await asyncio.gather(
            *(app.transport.queue_depth(queue) for _ in range(40)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, ChannelsExhausted)]
        answered = [r for r in results if isinstance(r, QueueDepth)]
        assert refused and answered and len(refused) + len(answered) == 40
        assert "channel_max" in str(refused[0])
        # The connection is the same, and everything works once channels closed again.
        assert connection_pids(publishing) == [connection]
        assert await app.transport.queue_depth(queue) is not None
        await refuse_then_send(app, 3)
    finally:
        await app.close()


async def test_the_channel_of_a_consumer_the_broker_cancelled_is_closed_once_replaced(
    prefix: str, topology_cleanup: set[str]
) -> None:
    # Deleting a work queue makes the broker cancel its consumer; the worker consumes again on
    # a new channel once the queue is back. The old one must not stay open for good.
    app = adding_app("channels", prefix, [])
    async with app, running_worker(app, queues=["default"]) as worker:
        consuming = f"taskq-worker:{worker.name}:consume"
        assert await (await app.send("add", 1, 2)).result(timeout=15) == 3
        before = await asyncio.to_thread(channels_of, consuming)
        await app.transport.delete_queue(app.names.work_queue("default"))

        async def cancelled() -> bool:
            return not await consumed(app.names.work_queue("default"))

        await eventually(cancelled, what="the broker to cancel the consumer")
        async with App("redeclarer", broker=BROKER, prefix=prefix) as redeclarer:
            await redeclarer.send("add", 2, 2)  # declares the queue again
        assert await (await app.send("add", 3, 3)).result(timeout=30) == 6

        async def flat() -> bool:
            return await asyncio.to_thread(channels_of, consuming) == before

        await eventually(flat, what=f"{consuming} to have {before} channels again")
