"""``taskq-worker --processes N``: the supervisor starts N workers, restarts one that dies,
stops them all gracefully on SIGTERM, gives up on a bad app, and its children stop by
themselves when the supervisor is killed."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest

from taskq import App, TaskStatus
from taskq.cli.common import ExitCode
from taskq.topology import Names
from tests.runlog import RunLog
from tests.support import BROKER, WorkerProcess, eventually

APP = "tests.apps.procapp:app"
pytestmark = pytest.mark.slow


@pytest.fixture
def client(prefix: str, topology_cleanup: set[str]) -> App:
    """A client App of the test's prefix; it sends procapp's tasks by name."""
    return App("client", broker=BROKER, prefix=prefix)


def children_of(pid: int) -> set[int]:
    """The live (not zombie) child processes of ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name)) == (pid, True):
            found.add(int(entry.name))
    return found


def _stat(pid: int) -> tuple[int, bool] | None:
    """(parent pid, alive and not a zombie) of ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return int(ppid), state not in ("Z", "X")


def is_running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Supervised:
    """A ``taskq-worker --processes 2`` subprocess and every child pid seen under it."""

    def __init__(self, prefix: str, app: str, *args: str) -> None:
        self.worker = WorkerProcess(app, prefix, "--processes", "2", *args)
        self.pid = self.worker.process.pid
        self.seen: set[int] = set()

    def output(self) -> str:
        return self.worker.output()

    async def children(self, *, excluding: set[int] | None = None) -> set[int]:
        """Wait until two live children run, none in ``excluding``; return their pids."""

        async def two() -> set[int] | None:
            if self.worker.process.poll() is not None:
                raise AssertionError(f"supervisor exited:\n{self.output()}")
            pids = children_of(self.pid)
            return pids if len(pids) == 2 and not pids & (excluding or set()) else None

        pids = await eventually(two, timeout=30, what="two worker processes")
        self.seen |= pids
        return pids

    async def logged(self, text: str, times: int) -> None:
        """Wait until ``text`` appears ``times`` times in the output (lines may lag)."""

        async def seen() -> bool:
            return self.output().count(text) >= times

        try:
            await eventually(seen, timeout=15, what=f"{times} x {text!r} in the output")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None
        assert self.output().count(text) == times, self.output()

    async def kill_all(self) -> None:
        if self.worker.process.poll() is None:
            self.seen |= children_of(self.pid)
        self.worker.kill()
        for pid in self.seen:
            _kill(pid)
        for pid in self.seen:
            await eventually(_async(not_running, pid), timeout=10, what=f"pid {pid} to go")


@contextlib.asynccontextmanager
async def supervisor(prefix: str, *args: str, app: str = APP) -> AsyncIterator[Supervised]:
    """Run a supervisor; it and every child it started are killed at the end."""
    sup = Supervised(prefix, app, *args)
    try:
        yield sup
    finally:
        await sup.kill_all()


@contextlib.asynccontextmanager
async def serving(
    prefix: str, client: App, *args: str
) -> AsyncIterator[tuple[Supervised, set[int]]]:
    """A supervisor whose two children consume, and the client open: ``(sup, child pids)``."""
    async with supervisor(prefix, *args) as sup:
        pids = await sup.children()
        await wait_consumers(prefix, sup, 2)
        async with client:
            yield sup, pids


async def consumers(prefix: str) -> int:
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(Names(prefix).work_queue("default"), passive=True)
        return queue.declaration_result.consumer_count or 0
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        await connection.close()


async def wait_consumers(prefix: str, sup: Supervised, count: int) -> None:
    async def enough() -> bool:
        if sup.worker.process.poll() is not None:
            raise AssertionError(f"supervisor exited:\n{sup.output()}")
        return await consumers(prefix) == count

    await eventually(enough, timeout=30, what=f"{count} consumers")


def _consumers_are(prefix: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await consumers(prefix) == n

    return check


def not_running(pid: int) -> bool:
    return not is_running(pid)


def _async(fn: Callable[[int], bool], pid: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn(pid)

    return check


async def test_two_processes_serve_and_a_killed_one_is_restarted(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with supervisor(prefix, "--concurrency", "1") as sup:
        first = await sup.children()
        await wait_consumers(prefix, sup, 2)
        await sup.logged(" consuming ", 2)
        async with client:
            # Concurrency and prefetch 1 per worker: the second task cannot wait behind the
            # first, and round-robin gives it to the other worker: each process runs one.
            handles = [await client.send("record_run", str(runs), 1.0) for _ in range(2)]
            assert sorted([await h.result(timeout=30) for h in handles])[-1] == 2
            assert {int(line) for line in runs.read_text().split()} == first

            victim = min(first)
            os.kill(victim, signal.SIGKILL)
            await eventually(_async(not_running, victim), timeout=10, what="the victim to die")
            second = await sup.children(excluding={victim})
            assert first - {victim} <= second  # the other one kept running
            await wait_consumers(prefix, sup, 2)
            assert "restarting in 1 s" in sup.output()
            await sup.logged(" consuming ", 3)

            handles = [await client.send("sleepy", 0.0, i) for i in range(10)]
            assert [await h.result(timeout=30) for h in handles] == list(range(10))
        assert sup.worker.process.poll() is None


async def test_a_child_killed_mid_task_loses_nothing(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = RunLog(tmp_path)
    async with serving(prefix, client, "--concurrency", "3") as (sup, first):
        held = await runs.send(client, *range(4))
        await runs.wait_running(held)
        # The children go on serving beside the held tasks (concurrency 3 each).
        others = [await client.send("sleepy", 0.0, 100 + i) for i in range(10)]
        assert [await h.result(timeout=60) for h in others] == list(range(100, 110))
        started = {task_id: pid for _, task_id, pid in runs.events()}
        assert set(started.values()) <= first
        victim = started[held[0].id]
        os.kill(victim, signal.SIGKILL)
        await eventually(_async(not_running, victim), timeout=10, what="the victim to die")
        await sup.children(excluding={victim})
        runs.release()
        # Every task ends in one result, including those the victim was running.
        assert [await h.result(timeout=60) for h in held] == [0, 1, 2, 3]
        await runs.wait_ended(len(held))
        # The victim's tasks ran again in a live child (redelivered); none ended in the
        # victim, and no other task ran twice.
        killed = {task_id for task_id, pid in started.items() if pid == victim}
        assert held[0].id in killed
        assert runs.count("start") == {h.id: 2 if h.id in killed else 1 for h in held}
        assert runs.count("end") == {h.id: 1 for h in held}
        assert victim not in {pid for event, _, pid in runs.events() if event == "end"}
        assert sup.worker.process.poll() is None


async def test_sigterm_stops_both_children_gracefully(
    prefix: str, client: App, tmp_path: Path
) -> None:
    runs = RunLog(tmp_path)
    async with serving(prefix, client, "--concurrency", "1") as (sup, pids):
        running = await runs.send(client, 7, 8)
        await runs.wait_running(running)
        sup.worker.signal(signal.SIGTERM)
        await sup.logged("waiting up to", 2)  # both children drain...
        assert runs.running() == {h.id for h in running}  # ...with their tasks running
        runs.release()
        assert await sup.worker.wait_exit(timeout=60) == ExitCode.OK, sup.output()
        # Each child finished its running task before stopping.
        assert [await h.result(timeout=30) for h in running] == [7, 8]
        assert {pid for event, _, pid in runs.events() if event == "end"} == pids
        for pid in pids:
            await eventually(_async(not_running, pid), timeout=10, what=f"child {pid} to stop")
        assert "restarting" not in sup.output()


async def test_bad_app_stops_the_group_with_usage_code(prefix: str) -> None:
    async with supervisor(prefix, app="tests.apps.no_such_module:app") as sup:
        assert await sup.worker.wait_exit(timeout=30) == ExitCode.USAGE, sup.output()
        output = sup.output()
    # The other child may be stopped by the supervisor before it gets as far as the import.
    assert "cannot import 'tests.apps.no_such_module'" in output, output
    assert "restarting" not in output
    assert "stopping all" in output


async def test_children_stop_when_the_supervisor_is_killed(prefix: str, client: App) -> None:
    async with supervisor(prefix) as sup:
        pids = await sup.children()
        await wait_consumers(prefix, sup, 2)
        sup.worker.signal(signal.SIGKILL)
        assert await sup.worker.wait_exit(timeout=10) == -signal.SIGKILL
        for pid in pids:
            await eventually(_async(not_running, pid), timeout=20, what=f"child {pid} to stop")
        await eventually(_consumers_are(prefix, 0), what="no consumers")
        await sup.logged("is gone; stopping", 2)


async def test_sigterm_while_children_start_exits_zero(prefix: str) -> None:
    # Children that get the forwarded signal before they installed their handlers die of it:
    # that is a clean stop too, not a crash.
    async with supervisor(prefix) as sup:

        async def started() -> set[int] | None:
            pids = children_of(sup.pid)
            cmdlines = [_cmdline(pid) for pid in pids]
            return (
                pids if len(pids) == 2 and all("taskq.cli.worker" in c for c in cmdlines) else None
            )

        sup.seen |= await eventually(started, timeout=30, what="two exec'd children")
        sup.worker.signal(signal.SIGTERM)
        assert await sup.worker.wait_exit(timeout=30) == ExitCode.OK, sup.output()
        assert "restarting" not in sup.output()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_second_sigterm_forces_both_children_while_task_threads_run(
    prefix: str, client: App
) -> None:
    # Each child runs a plain def task whose thread sleeps 60 s, as long as the shutdown timeout.
    args = ("--concurrency", "1", "--shutdown-timeout", "60")
    async with serving(prefix, client, *args) as (sup, pids):
        handles = [await client.send("busy", 60.0) for _ in range(2)]

        async def started() -> bool:
            return all([await h.status() is TaskStatus.STARTED for h in handles])

        await eventually(started, what="both tasks to start")
        sup.worker.signal(signal.SIGTERM)
        await sup.logged("waiting up to 60.0 s", 2)  # both children drain
        sup.worker.signal(signal.SIGTERM)  # forwarded: both children force their stop
        # Far less than the 60 s the tasks and the shutdown timeout would take.
        assert await sup.worker.wait_exit(timeout=20) == ExitCode.FORCED, sup.output()
        for pid in pids:
            await eventually(_async(not_running, pid), timeout=10, what=f"child {pid} to stop")
        assert "restarting" not in sup.output()
