"""Cancellation in a real ``taskq-worker``: a process-pool task is stopped by ending its
process, and ``taskq cancel`` on the command line (tests/apps/cancelapp.py)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from taskq import App, TaskCancelled, TaskStatus
from tests.integration.test_process_pool import all_gone
from tests.support import BROKER, WorkerProcess, eventually, queue_length, run_taskq

APP = "tests.apps.cancelapp:app"
DEADLINE = 30.0
pytestmark = [pytest.mark.slow, pytest.mark.one_queue_only]


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    """A client App of the test's prefix; it sends cancelapp's tasks by name."""
    return App("client", broker=BROKER, prefix=prefix)


async def test_cancel_ends_the_process_of_a_pool_task(
    prefix: str, client: App, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    worker = WorkerProcess(APP, prefix, "--sync-workers", "1")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send("linger", str(marker))

            async def started() -> bool:
                return marker.exists() and marker.read_text() != ""

            await eventually(started, timeout=DEADLINE, what="the pool task to start")
            pid = int(marker.read_text())
            done = await handle.cancel(reason="end it", wait=True, timeout=DEADLINE)
            assert done.stopped and len(done.stopped_on) == 1
            await eventually(partial(all_gone, [pid]), what="the pool process to end")
            with pytest.raises(TaskCancelled, match="end it"):
                await handle.result(timeout=DEADLINE)
            # A new pool process serves the next task.
            ran = tmp_path / "ran"
            assert await (await client.send("note", str(ran))).result(timeout=DEADLINE) == "ran"
            assert await queue_length(client.names.dead_queue("default")) == 0
    finally:
        worker.kill()


async def test_the_cli_cancels_queued_tasks(prefix: str, client: App, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    async with client:
        first = await client.send("note", str(ran))
        second = await client.send("note", str(ran))
        done = await run_taskq(
            prefix, "cancel", first.id, second.id, "--reason", "from the CLI", "--json"
        )
        assert done.code == 0, done.err
        rows = json.loads(done.out)
        assert [row["task_id"] for row in rows] == [first.id, second.id]
        # The CLI's own AMQP store cannot tell the status of another process's task.
        assert {row["status"] for row in rows} == {"revoked"}
        assert all(row["reached"] for row in rows)  # no worker reads cancels yet
        worker = WorkerProcess(APP, prefix)
        try:
            await worker.wait_ready()
            for handle in (first, second):
                with pytest.raises(TaskCancelled, match="from the CLI"):
                    await handle.result(timeout=DEADLINE)
                assert await handle.status() is TaskStatus.CANCELLED
        finally:
            worker.kill()
    assert not ran.exists()
