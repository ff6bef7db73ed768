"""The real ``taskq-worker`` process: SIGTERM drains, a second signal forces, SIGKILL loses
nothing, and the exit codes are the named ones (taskq.cli.common.ExitCode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from taskq import App, TaskHandle, TaskStatus
from taskq.cli.common import ExitCode
from taskq.topology import Names
from tests.support import BROKER, REPO, WorkerProcess, eventually, queue_messages

APP = "tests.apps.procapp:app"
pytestmark = pytest.mark.slow


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    """A client App of the test's prefix; it sends procapp's tasks by name."""
    return App("client", broker=BROKER, prefix=prefix)


async def _all_have(handles: list[TaskHandle[object]], status: TaskStatus) -> bool:
    return all([await h.status() is status for h in handles])


@pytest.mark.parametrize("prefetch", ["4", "8"], ids=["prefetch=concurrency", "4-reserved"])
async def test_sigterm_drains_running_tasks_and_loses_none(
    prefix: str, client: App, prefetch: str
) -> None:
    # With prefetch 8, four deliveries wait for a slot when the signal comes: they are
    # given back to the queue, not run.
    first = WorkerProcess(APP, prefix, "--concurrency", "4", "--prefetch", prefetch)
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with client:
            running = [await client.send("sleepy", 2.0, i) for i in range(4)]
            queued = [await client.send("sleepy", 0.0, 100 + i) for i in range(20)]
            await eventually(lambda: _all_have(running, TaskStatus.STARTED), what="4 tasks STARTED")
            first.signal(signal.SIGTERM)
            assert await first.wait_exit() == ExitCode.OK, first.output()
            # The tasks that were running when the signal came finished and were recorded.
            assert [await h.result(timeout=10) for h in running] == [0, 1, 2, 3]
            # The rest never started: they wait in the work queue for the next worker, not
            # marked redelivered (the next worker must not count a crash for them). Reading
            # them here marks them redelivered: the second worker counts one delivery each.
            waiting = await queue_messages(prefix, Names(prefix).work_queue("default"))
            assert sorted(m.message_id for m in waiting) == sorted(h.id for h in queued)
            assert not [m.message_id for m in waiting if m.redelivered]
            assert not [h for h in queued if (await h.status()) is not TaskStatus.PENDING]
            second = WorkerProcess(APP, prefix, "--concurrency", "4")
            results = [await h.result(timeout=30) for h in queued]
            assert results == [100 + i for i in range(20)]
        assert "waiting up to" in first.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_second_signal_forces_stop_and_requeues(prefix: str, client: App) -> None:
    worker = WorkerProcess(APP, prefix, "--concurrency", "2")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send("sleepy", 60.0, 7)
            await eventually(
                lambda: _all_have([handle], TaskStatus.STARTED), what="the task to start"
            )
            worker.signal(signal.SIGTERM)
            await eventually(
                _async(lambda: "stopping gracefully" in worker.output()),
                what="the worker to log the first signal",
            )
            worker.signal(signal.SIGINT)
            # Far less than the task's 60 s and the 30 s shutdown timeout.
            assert await worker.wait_exit(timeout=20) == ExitCode.OK, worker.output()
            assert "stopping now" in worker.output()
            messages = await queue_messages(prefix, Names(prefix).work_queue("default"))
            assert [(m.message_id, m.type) for m in messages] == [(handle.id, "sleepy")]
    finally:
        worker.kill()


async def test_sigkill_mid_task_redelivers_to_a_new_worker(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    first = WorkerProcess(APP, prefix, "--concurrency", "2")
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with client:  # the client stays connected: its reply queue outlives the crash
            handle = await client.send("record_run", str(runs), 2.0)
            await eventually(_async(lambda: runs.exists() and runs.read_text()), what="a run")
            first.signal(signal.SIGKILL)
            assert await first.wait_exit() == -signal.SIGKILL
            second = WorkerProcess(APP, prefix, "--concurrency", "2")
            # At least once: the interrupted run counted, the second run finished the task.
            assert await handle.result(timeout=40) == 2
        pids = runs.read_text().split()
        assert pids == [str(first.process.pid), str(second.process.pid)]
        assert "Traceback" not in second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()


def _async(check: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    """A plain check as the async callable that ``eventually`` polls."""

    async def wrapped() -> object:
        return check()

    return wrapped


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TASKQ_BROKER": BROKER, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "taskq.cli.worker", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exit_code_usage_for_a_missing_module() -> None:
    done = _run_cli("tests.apps.no_such_module:app")
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "cannot import" in done.stderr


def test_exit_code_usage_for_a_module_without_an_app() -> None:
    done = _run_cli("tests.apps:app")
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "is not a taskq App" in done.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("amqp://guest:s3cr3tpw@127.0.0.1:1/", "127.0.0.1:1"),  # nothing listens on port 1
        ("amqp://guest:s3cr3tpw@127.0.0.1:5672/", "ACCESS_REFUSED"),  # a wrong password
    ],
    ids=["refused", "bad-password"],
)
def test_exit_code_broker_unreachable_hides_the_password(prefix: str, url: str, why: str) -> None:
    done = _run_cli(APP, env={"TASKQ_BROKER": url, "TASKQ_PREFIX": prefix})
    assert done.returncode == ExitCode.BROKER_UNREACHABLE, done.stdout + done.stderr
    assert why in done.stderr
    assert "s3cr3tpw" not in done.stdout + done.stderr


def test_exit_code_ok_for_help() -> None:
    done = _run_cli("--help")
    assert done.returncode == ExitCode.OK
    assert "exit codes" in done.stdout
