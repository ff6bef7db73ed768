"""The process pool, in the real ``taskq-worker``: time limits, recycling, a child that dies,
shutdown, signals, and no process outliving the worker (tests/apps/poolapp.py)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from taskq import App, TaskFailed
from taskq.cli.common import ExitCode
from taskq.message import H_REASON
from taskq.topology import Names
from tests.support import BROKER, WorkerProcess, eventually, queue_messages

APP = "tests.apps.poolapp:app"
pytestmark = [pytest.mark.slow, pytest.mark.one_queue_only]


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    """A client App of the test's prefix; it sends poolapp's tasks by name."""
    return App("client", broker=BROKER, prefix=prefix)


def pool_pids(worker: WorkerProcess) -> list[int]:
    """Every pool process the worker has started so far, from its log."""
    return [int(pid) for pid in re.findall(r"pool process (\d+) started", worker.output())]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return re.search(r"^State:\s+Z", status, re.M) is None


async def all_gone(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)


async def test_soft_timeout_raises_in_the_task_and_its_cleanup_runs(
    prefix: str, client: App, tmp_path: Path
) -> None:
    cleanup = tmp_path / "cleanup"
    worker = WorkerProcess(APP, prefix, "--sync-workers", "1")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send("soft", str(cleanup))
            with pytest.raises(TaskFailed, match="soft timeout") as failed:
                await handle.result(timeout=30)
            assert failed.value.remote_type == "taskq.exceptions.TaskTimeout"
            # The cleanup ran in the pool process, which then served on.
            assert cleanup.read_text() == f"cleaned up in {pool_pids(worker)[0]}"
            assert await (await client.send("pid")).result(timeout=30) == pool_pids(worker)[0]
    finally:
        worker.kill()


async def test_hard_timeout_kills_the_process_and_the_worker_serves_on(
    prefix: str, client: App
) -> None:
    # sleeps_forever: time.sleep(3600); deaf_c_call: libc sleep(3600) with SIGALRM blocked,
    # past its 0.3 s soft timeout. SIGKILL ends both.
    worker = WorkerProcess(APP, prefix, "--sync-workers", "1")
    try:
        await worker.wait_ready()
        async with client:
            for task in ("sleeps_forever", "deaf_c_call"):
                (victim,) = [pid for pid in pool_pids(worker) if alive(pid)]
                handle = await client.send(task)
                with pytest.raises(TaskFailed, match="hard timeout") as failed:
                    await handle.result(timeout=30)
                assert failed.value.remote_type == "taskq.exceptions.TaskHardTimeout"
                assert f"its process {victim} was killed" in str(failed.value)
                assert not alive(victim)
                dead = await queue_messages(prefix, Names(prefix).dead_queue("default"))
                assert (handle.id, "hard-timeout") in [
                    (m.message_id, m.headers[H_REASON]) for m in dead
                ]
                # A new process took the killed one's place.
                replacement = await (await client.send("pid")).result(timeout=30)
                assert replacement != victim
                # (the log is written in batches: its line may come a moment later)
                await eventually(_async(partial(_started, worker, replacement)), what="log")
    finally:
        worker.kill()


async def test_both_recycling_limits_replace_the_process_after_its_task(
    prefix: str, client: App
) -> None:
    # A pool process of this app starts well under 150 MiB; keep(200) leaks 200 MiB.
    worker = WorkerProcess(
        APP, prefix, "--sync-workers", "1",
        "--max-tasks-per-child", "3", "--max-memory-per-child", "150",
    )  # fmt: skip
    try:
        await worker.wait_ready()
        async with client:
            counted = [await (await client.send("keep", 1)).result(timeout=30) for _ in range(4)]
            big = await (await client.send("keep", 200)).result(timeout=30)
            after = await (await client.send("pid")).result(timeout=30)
        assert counted[0] == counted[1] == counted[2] != counted[3] == big != after, counted
        output = worker.output()
        assert "ran 3 tasks (max_tasks_per_child)" in output
        assert "(max_memory_per_child)" in output
    finally:
        worker.kill()


async def test_a_dying_process_costs_only_its_task(prefix: str, client: App) -> None:
    # Each death counts as a redelivery; at max_deliveries (2 here) the crash-loop rule
    # parks the message in the dead-letter queue. Meanwhile the worker serves on.
    worker = WorkerProcess(APP, prefix, "--sync-workers", "2", env={"TASKQ_MAX_DELIVERIES": "2"})
    try:
        await worker.wait_ready()
        async with client:
            dying = [await client.send(task) for task in ("segfault", "exits")]
            others = [await client.send("spin", 1000) for _ in range(4)]
            assert [await h.result(timeout=30) for h in others] == [499500] * 4
            for handle in dying:
                with pytest.raises(TaskFailed, match="CrashLoop"):
                    await handle.result(timeout=30)
            dead = await queue_messages(prefix, Names(prefix).dead_queue("default"))
            assert sorted((m.message_id, m.headers[H_REASON]) for m in dead) == sorted(
                (h.id, "crash-loop") for h in dying
            )
            alive_pid = await (await client.send("pid")).result(timeout=30)
            await eventually(_async(lambda: alive_pid in pool_pids(worker)), what="its log")
        output = worker.output()
        assert "exit status -11" in output  # SIGSEGV
        assert "exit status 3" in output  # os._exit(3)
        assert worker.process.poll() is None
    finally:
        worker.kill()


async def test_sigterm_with_a_stuck_process_exits_after_the_shutdown_timeout(
    prefix: str, client: App, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    worker = WorkerProcess(APP, prefix, "--sync-workers", "1", "--shutdown-timeout", "1")
    try:
        await worker.wait_ready()
        async with client:
            handle = await client.send("stuck", str(marker))
            await eventually(_async(marker.exists), what="the task to start")
            worker.signal(signal.SIGTERM)
            began = time.monotonic()
            # The task sleeps an hour: the worker must not wait for it.
            assert await worker.wait_exit(timeout=20) == ExitCode.OK, worker.output()
            print(f"exited {time.monotonic() - began:.2f} s after SIGTERM")
            await eventually(_async(lambda: not alive(int(marker.read_text()))), what="kill")
            await eventually(_async(lambda: all_gone_now(pool_pids(worker))), what="no children")
            messages = await queue_messages(prefix, Names(prefix).work_queue("default"))
            assert [m.message_id for m in messages] == [handle.id]  # back in its queue
    finally:
        worker.kill()


async def test_second_signal_ends_the_processes_at_once(
    prefix: str, client: App, tmp_path: Path
) -> None:
    marker = tmp_path / "pid"
    worker = WorkerProcess(APP, prefix, "--sync-workers", "2", "--shutdown-timeout", "60")
    try:
        await worker.wait_ready()
        async with client:
            await client.send("stuck", str(marker))
            await eventually(_async(marker.exists), what="the task to start")
            worker.signal(signal.SIGTERM)
            await eventually(
                _async(lambda: "waiting up to 60.0 s" in worker.output()), what="the drain"
            )
            worker.signal(signal.SIGINT)
            assert await worker.wait_exit(timeout=20) == ExitCode.FORCED, worker.output()
            await eventually(_async(lambda: all_gone_now(pool_pids(worker))), what="no children")
    finally:
        worker.kill()


async def test_sigkill_of_the_worker_leaves_no_pool_process(prefix: str, client: App) -> None:
    worker = WorkerProcess(APP, prefix, "--sync-workers", "2")
    try:
        await worker.wait_ready()
        pids = pool_pids(worker)
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        worker.signal(signal.SIGKILL)
        assert await worker.wait_exit() == -signal.SIGKILL
        await eventually(lambda: all_gone(pids), what="the pool processes to die")
    finally:
        worker.kill()


async def test_tasks_run_in_parallel_in_every_process(
    prefix: str, client: App, tmp_path: Path
) -> None:
    # Each rendezvous task waits until both have started: they finish only if two processes
    # run them at the same time. (1 vs 2 processes on CPU-bound work: benchmarks/pool.py.)
    init_log = tmp_path / "process-init.log"
    worker = WorkerProcess(
        APP, prefix, "--sync-workers", "2", "--concurrency", "2",
        env={"TASKQ_TEST_INIT_LOG": str(init_log)},
    )  # fmt: skip
    try:
        await worker.wait_ready()
        async with client:
            handles = [await client.send("rendezvous", str(tmp_path), 2) for _ in range(2)]
            pids = {await h.result(timeout=60) for h in handles}
        assert len(pids) == 2
        assert pids == set(pool_pids(worker))
        # The App's on_process_init hooks ran in each pool process (and in the worker's own).
        initialised = {int(line) for line in init_log.read_text().split()}
        assert pids <= initialised
        assert worker.process.pid in initialised
    finally:
        worker.kill()


def _started(worker: WorkerProcess, pid: int) -> bool:
    return pid in pool_pids(worker)


def all_gone_now(pids: list[int]) -> bool:
    return bool(pids) and not any(alive(pid) for pid in pids)


def _async(check: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return check()

    return run
