"""The real ``taskq-worker`` process: SIGTERM drains, a second signal forces, SIGKILL loses
nothing, and the exit codes are the named ones (taskq.cli.common.ExitCode)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from taskq import App, TaskFailed, TaskHandle, TaskStatus
from taskq.cli.common import ExitCode
from taskq.topology import Names
from tests.runlog import RunLog
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
    prefix: str, client: App, prefetch: str, tmp_path: Path
) -> None:
    # With prefetch 8, four deliveries wait for a slot when the signal comes: they are
    # given back to the queue, not run.
    runs = RunLog(tmp_path)
    first = WorkerProcess(APP, prefix, "--concurrency", "4", "--prefetch", prefetch)
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with client:
            running = await runs.send(client, *range(4))
            queued = [await client.send("sleepy", 0.0, 100 + i) for i in range(20)]
            await runs.wait_running(running)
            first.signal(signal.SIGTERM)
            await eventually(
                _async(lambda: "waiting up to" in first.output()), what="the worker to drain"
            )
            # Draining: the running tasks go on (they end only when released), nothing new
            # starts, and the worker waits for them.
            assert first.process.poll() is None
            assert runs.running() == {h.id for h in running}
            runs.release()
            assert await first.wait_exit() == ExitCode.OK, first.output()
            # The tasks that were running when the signal came finished and were recorded.
            assert [await h.result(timeout=30) for h in running] == [0, 1, 2, 3]
            assert runs.count("end") == {h.id: 1 for h in running}
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
    finally:
        first.kill()
        if second is not None:
            second.kill()


@pytest.mark.parametrize("task", ["stuck", "busy"], ids=["past-its-timeout", "at-the-stop"])
async def test_sigterm_exits_without_waiting_for_a_task_thread(
    prefix: str, client: App, task: str
) -> None:
    # A plain def task's thread sleeps 60 s: Python cannot stop it. "stuck" timed out after
    # 1 s and runs on; "busy" still runs when the 1 s shutdown timeout ends.
    worker = WorkerProcess(APP, prefix, "--shutdown-timeout", "1")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send(task, 60.0)
            if task == "stuck":
                with pytest.raises(TaskFailed, match="ran longer than 1"):
                    await handle.result(timeout=30)
            else:
                await eventually(
                    lambda: _all_have([handle], TaskStatus.STARTED), what="the task to start"
                )
            worker.signal(signal.SIGTERM)
            # The shutdown timeout and a few seconds, far less than the thread's 60 s.
            code = await worker.wait_exit(timeout=20)
            assert code == ExitCode.THREADS_ABANDONED, worker.output()
            assert "1 task thread(s) still running" in worker.output()
            if task == "busy":  # given back to its queue, for the next worker
                messages = await queue_messages(prefix, Names(prefix).work_queue("default"))
                assert [m.message_id for m in messages] == [handle.id]
    finally:
        worker.kill()


@pytest.mark.parametrize(
    ("task", "args", "second"),
    [("sleepy", (60.0, 7), signal.SIGINT), ("busy", (60.0,), signal.SIGTERM)],
    ids=["async-task", "thread-task"],  # a plain def task's thread cannot be stopped
)
async def test_second_signal_forces_stop_and_requeues(
    prefix: str, client: App, task: str, args: tuple[object, ...], second: signal.Signals
) -> None:
    worker = WorkerProcess(APP, prefix, "--concurrency", "2", "--shutdown-timeout", "60")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send(task, *args)
            await eventually(
                lambda: _all_have([handle], TaskStatus.STARTED), what="the task to start"
            )
            worker.signal(signal.SIGTERM)
            await eventually(
                _async(lambda: "waiting up to 60.0 s" in worker.output()),
                what="the worker to drain",
            )
            worker.signal(second)
            # Far less than the task's 60 s and the 60 s shutdown timeout.
            assert await worker.wait_exit(timeout=20) == ExitCode.FORCED, worker.output()
            assert "stopping now" in worker.output()
            messages = await queue_messages(prefix, Names(prefix).work_queue("default"))
            assert [(m.message_id, m.type) for m in messages] == [(handle.id, task)]
    finally:
        worker.kill()


async def test_sigkill_mid_task_redelivers_to_a_new_worker(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = RunLog(tmp_path)
    first = WorkerProcess(APP, prefix, "--concurrency", "2")
    second: WorkerProcess | None = None
    try:
        await first.wait_ready()
        async with client:  # the client stays connected: its reply queue outlives the crash
            (handle,) = await runs.send(client, 7)
            await runs.wait_running([handle])
            # The worker goes on serving beside it (concurrency 2).
            assert await (await client.send("sleepy", 0.0, 1)).result(timeout=30) == 1
            first.signal(signal.SIGKILL)
            assert await first.wait_exit() == -signal.SIGKILL
            runs.release()
            second = WorkerProcess(APP, prefix, "--concurrency", "2")
            # At least once: the interrupted run counted, the second run finished the task.
            assert await handle.result(timeout=40) == 7
        assert runs.events() == [
            ("start", handle.id, first.process.pid),
            ("start", handle.id, second.process.pid),
            ("end", handle.id, second.process.pid),
        ]
        assert "Traceback" not in second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_json_log_lines_carry_the_task_fields(prefix: str, client: App) -> None:
    worker = WorkerProcess("tests.apps.ops_app:app", prefix, "--log-format", "json")
    try:
        await worker.wait_ready()
        async with client:
            added = await client.send("add", 2, 3)
            failed = await client.send("fail", "boom")
            assert await added.result(timeout=30) == 5
            with pytest.raises(TaskFailed):
                await failed.result(timeout=30)

            def outcomes() -> dict[str, dict[str, Any]]:
                # The outcome lines (the failed task's dead-letter copy has a line of its own,
                # logged before its outcome is recorded).
                entries = [json.loads(line) for line in worker.output().splitlines()]
                return {
                    e["task_id"]: e
                    for e in entries
                    if e.get("task_id") in ids and "dead-lettered" not in e["message"]
                }

            ids = {added.id, failed.id}
            logged = await eventually(
                _async(lambda: len(outcomes()) == 2 and outcomes()), what="both outcomes logged"
            )
        # Every line is one JSON object (json.loads above would have raised on any other).
        assert {k: logged[added.id][k] for k in ("task_name", "queue", "attempt", "level")} == {
            "task_name": "add", "queue": "default", "attempt": 1, "level": "debug"
        }  # fmt: skip
        assert "succeeded" in logged[added.id]["message"]
        assert logged[added.id]["duration"] >= 0
        assert {k: logged[failed.id][k] for k in ("task_name", "queue", "attempt", "level")} == {
            "task_name": "fail", "queue": "default", "attempt": 1, "level": "warning"
        }  # fmt: skip
        assert "failed: ValueError: boom" in logged[failed.id]["message"]
    finally:
        worker.kill()


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
    ("url", "why", "code"),
    [
        # nothing listens on port 1
        ("amqp://guest:s3cr3tpw@127.0.0.1:1/", "127.0.0.1:1", ExitCode.BROKER_UNREACHABLE),
        # a wrong password: refused, not unreachable
        ("amqp://guest:s3cr3tpw@127.0.0.1:5672/", "ACCESS_REFUSED", ExitCode.BROKER_REFUSED),
    ],
    ids=["refused", "bad-password"],
)
def test_exit_code_broker_unreachable_hides_the_password(
    prefix: str, url: str, why: str, code: ExitCode
) -> None:
    done = _run_cli(APP, env={"TASKQ_BROKER": url, "TASKQ_PREFIX": prefix})
    assert done.returncode == code, done.stdout + done.stderr
    assert why in done.stderr
    assert "s3cr3tpw" not in done.stdout + done.stderr


async def test_exit_code_usage_for_a_worker_name_in_use(
    prefix: str, topology_cleanup: set[str]
) -> None:
    first = WorkerProcess(APP, prefix, "--name", "twin")
    try:
        await first.wait_ready()
        done = await asyncio.to_thread(
            _run_cli, APP, "--name", "twin", env={"TASKQ_PREFIX": prefix}
        )
        # A clear one-line error and the usage code, not "worker crashed" and a traceback.
        assert done.returncode == ExitCode.USAGE, done.stderr
        assert "a worker named 'twin' already runs" in done.stderr
        assert "Traceback" not in done.stderr and "crashed" not in done.stderr
    finally:
        first.kill()


def test_exit_code_ok_for_help() -> None:
    done = _run_cli("--help")
    assert done.returncode == ExitCode.OK
    assert "exit codes" in done.stdout
