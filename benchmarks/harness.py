"""What every scenario shares: results, progress, worker subprocesses, the completion counter,
and the drain measurement (rate and CPU per task). The broker and Redis helpers are in
``broker``; the table, ratios, JSON and PNG in ``report``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from taskq import App
from taskq.testing.isolation import delete_topology

from . import cpu, log_guard
from .bench_apps import counter
from .broker import BROKER_DOWN, BrokerWatch, check_broker, purge, queue_depth, wait_for_broker

REPO = Path(__file__).resolve().parent.parent
POLL = 0.05  # seconds between completion polls


@dataclasses.dataclass
class Result:
    """One measured figure: a rate (tasks/s) or latencies (ms)."""

    system: str
    scenario: str
    variant: str
    config: str
    tasks: int
    seconds: float
    counted: int | None = None
    tasks_per_s: float | None = None
    latency_ms: dict[str, float] | None = None
    fraction_of_ceiling: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    failed: bool = False
    invalid: str = ""
    """Why the figure does not count ("" when it does): see ``log_guard``."""
    role: str = ""
    """What the row stands for in the ratios: taskq's "headline" figure of its scenario (and
    "batch", "c64", "no-reply", "redis"), raw's "ceiling", a peer's "default" or "tuned"."""
    repetition: int = 1
    """Which repetition of the run measured the row (``--repeat``)."""
    runs: list[Result] = dataclasses.field(default_factory=list)
    """A row aggregated over repetitions (``benchmarks.repeat``): the rows it comes from, one
    per repetition that measured it, whose medians its figures are ([] for a measured row)."""

    @property
    def p50(self) -> float | None:
        return self.latency_ms["p50"] if self.latency_ms else None

    @property
    def usable(self) -> bool:
        """Measured and valid: a row that may enter a comparison."""
        return not self.failed and not self.invalid


@dataclasses.dataclass
class Options:
    """What one harness run measures."""

    tasks: int
    roundtrips: int
    fanout: int
    sequential_cap: int
    scenarios: list[str]
    systems: list[str]
    concurrency: int = 64  # taskq-worker --concurrency and raw prefetch of the second row
    prefetch: int = 1000  # the tuned prefetch / concurrency of every system (issue 10)

    def count(self, scenario: str) -> int:
        """How many tasks (or calls) a row of ``scenario`` measures."""
        return {"roundtrip": self.roundtrips, "fanout": self.fanout}.get(scenario, self.tasks)


def rate(
    system: str,
    scenario: str,
    variant: str,
    config: str,
    tasks: int,
    seconds: float,
    role: str = "",
    **extra: Any,
) -> Result:
    """A throughput result."""
    counted = extra.pop("counted", tasks)
    return Result(
        system,
        scenario,
        variant,
        config,
        tasks,
        seconds,
        counted,
        tasks / seconds if seconds > 0 else 0.0,
        extra=extra,
        role=role,
    )


def latency(
    system: str,
    scenario: str,
    variant: str,
    config: str,
    samples: Sequence[float],
    seconds: float,
    role: str = "",
) -> Result:
    """A latency result from per-call seconds: p50, p90, p99 in milliseconds."""
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return Result(
        system,
        scenario,
        variant,
        config,
        len(ms),
        seconds,
        len(ms),
        len(ms) / seconds if seconds else 0.0,
        {"p50": pct(50), "p90": pct(90), "p99": pct(99), "mean": statistics.fmean(ms)},
        role=role,
    )


def failed(
    system: str,
    scenario: str,
    variant: str,
    config: str,
    tasks: int,
    exc: BaseException,
    role: str = "",
) -> Result:
    """A row that says a measurement failed (the rest of the run keeps its figures)."""
    progress(f"{system} {scenario} [{variant}] failed: {str(exc)[:1500]}")
    return Result(
        system,
        scenario,
        variant,
        config,
        tasks,
        0.0,
        0,
        failed=True,
        role=role,
        extra={"error": f"{type(exc).__name__}: {str(exc)[:300]}"},
    )


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def unique(kind: str) -> str:
    """A queue/prefix name no other run uses."""
    return f"bench{kind}{uuid.uuid4().hex[:8]}"


# -- the completion counter ------------------------------------------------------------------


class CounterDir:
    """A tmpfs directory holding the shared-memory counters of one measurement's workers."""

    def __init__(self) -> None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.path = tempfile.mkdtemp(prefix="taskq-bench-", dir=base)

    def read(self) -> tuple[int, int, int]:
        return counter.read_all(self.path)

    def processes(self) -> int:
        """How many processes have run a task (each writes its own file on its first hit)."""
        return len(os.listdir(self.path))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def counter_cost_ns(n: int = 200_000) -> float:
    """What one ``counter.hit()`` costs, in nanoseconds (the completion signal's price)."""
    directory = CounterDir()
    try:
        c = counter.Counter(directory.path)
        start = time.perf_counter_ns()
        for _ in range(n):
            c.hit()
        return (time.perf_counter_ns() - start) / n
    finally:
        directory.remove()


# -- worker subprocesses ---------------------------------------------------------------------


class Workers:
    """Worker subprocesses of one measurement, with their counters and logs."""

    def __init__(self, commands: Sequence[Sequence[str]], env: dict[str, str]) -> None:
        self.counters = CounterDir()
        self.logs: list[Path] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.running_mark: tuple[int, int] | None = None
        """(log lines, tasks done) once every process has run a task: the log guard's start."""
        full_env = {
            **os.environ,
            **env,
            "BENCH_COUNTER_DIR": self.counters.path,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",  # a line written is in the log file at once (log guard)
        }
        self.started_ns = time.monotonic_ns()
        for command in commands:
            log = Path(self.counters.path + f"-{len(self.logs)}.log")
            self.logs.append(log)
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        list(command),
                        cwd=REPO,
                        env=full_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # own group: forked children die with it

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def wait_running(
        self, processes: int, tasks: int, timeout: float
    ) -> tuple[int, cpu.Sample]:
        """Wait until ``processes`` worker processes have each run a task, then sample CPU:
        (tasks done by then, sample).

        Polls every 5 ms, so the CPU of imports, connects and declarations stays out of the
        per-task figure. If that leaves under a tenth of ``tasks`` to measure (one process got
        them all, or they went too fast), the last sample taken before the first task is used.
        """
        deadline = time.monotonic() + timeout
        idle = cpu.Sample(self.pids)
        while True:
            count = self.counters.read()[0]
            if (count and self.counters.processes() >= processes) or count >= tasks // 2:
                break
            if not count:
                idle = cpu.Sample(self.pids)
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no task done after {timeout:.0f} s:\n{self.output()}")
            await asyncio.sleep(0.005)
        # from here, a process's startup lines (a second worker's banner) are behind it
        self.running_mark = (self.log_lines(), count)
        if tasks - count < tasks / 10:
            return 0, idle
        return count, cpu.Sample(self.pids)

    def log_lines(self) -> int:
        """Lines the workers have written to stdout/stderr so far."""
        return log_guard.count_lines(self.logs)

    def lines_since_running(self, count: int) -> tuple[int, int]:
        """(lines written, tasks done) since every process ran a task, ``count`` done now."""
        lines, done = self.running_mark or (0, 0)
        return self.log_lines() - lines, count - done

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())

    def check_alive(self) -> None:
        """Raise if a worker exited, or if the broker restarted under the measurement."""
        check_broker()
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {process.args!r} exited with {process.returncode}:\n{self.output()}"
                )

    async def wait_log(self, text: str, timeout: float = 60) -> None:
        """Wait until every worker's log contains ``text`` (e.g. its 'consuming' line)."""
        deadline = time.monotonic() + timeout
        while not all(text in p.read_text(errors="replace") for p in self.logs):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers did not log {text!r}:\n{self.output()}")
            await asyncio.sleep(POLL)

    async def wait_count(self, target: int, label: str, timeout: float) -> tuple[int, int, int]:
        """Poll the counters every 50 ms until they reach ``target``: (count, first, last)."""
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while True:
            count, first, last = self.counters.read()
            if count >= target:
                return count, first, last
            self.check_alive()
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{label}: {count}/{target} after {timeout:.0f} s")
            if now - shown > 2:
                progress(f"  {label}: {count}/{target}")
                shown = now
            await asyncio.sleep(POLL)

    def rss_kb(self) -> list[int]:
        """Resident memory (VmRSS, kB) of each worker process."""
        return [rss_kb(p.pid) for p in self.processes]

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while any(p.poll() is None for p in self.processes) and time.monotonic() < deadline:
            await asyncio.sleep(POLL)
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # forked children left behind
        self.counters.remove()
        for log in self.logs:
            log.unlink(missing_ok=True)


def app_env(app: App, broker: str, stamps_dir: str) -> dict[str, str]:
    """The environment of a process that opens a bench app on ``app``'s prefix and queue type
    (a ``taskq-worker``, a producer), writing its stamps to ``stamps_dir``."""
    settings = app.settings
    return {"TASKQ_PREFIX": settings.prefix, "TASKQ_BROKER": broker,
            "TASKQ_QUEUE_TYPE": settings.queue_type, "BENCH_STAMPS": stamps_dir}  # fmt: skip


@contextlib.asynccontextmanager
async def taskq_worker(
    target: str, app: App, broker: str, stamps_dir: str, *, concurrency: int, processes: int = 1
) -> AsyncIterator[Workers]:
    """A ``taskq-worker`` of ``target`` (``module:app``) on ``app``'s prefix and queue type,
    writing its stamps (bench_apps/stamps.py) to ``stamps_dir``: each of its ``processes``
    consumes once this enters; it is stopped, and the prefix's topology deleted, on exit."""
    settings = app.settings
    env = app_env(app, broker, stamps_dir)
    workers = Workers(
        [[sys.executable, "-m", "taskq.cli.worker", target,
          "--concurrency", str(concurrency), "--processes", str(processes)]],
        env,
    )  # fmt: skip
    try:
        await workers.wait_log("consuming", timeout=60)
        while workers.output().count("consuming") < processes:  # each process's line
            workers.check_alive()
            await asyncio.sleep(POLL)
        yield workers
    finally:
        await workers.stop()
        await delete_topology(settings, ["default"])


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclasses.dataclass(frozen=True)
class Drain:
    """One drain measurement: the row it fills and the worker processes that drain."""

    system: str
    scenario: str  # "drain" (one worker process) or "drain2" (two)
    variant: str
    config: str
    commands: list[list[str]]
    env: dict[str, str]
    queue: str
    processes: int  # processes that run tasks (each writes its own counter)
    role: str = ""
    hits: int = 1  # counter hits per task (2: at its start and its end, benchmarks/pool.py)


T = TypeVar("T", Result, list[Result])


async def steadily(
    label: str,
    attempt: Callable[[], Awaitable[T]],
    cleanup: Callable[[], Awaitable[object]] | None = None,
    tries: int = 3,
) -> T:
    """``attempt()``, again (up to ``tries`` in all) when the broker restarted meanwhile or
    dropped the connection: on a shared machine other engineers' tests restart RabbitMQ. Before
    another try: wait until the broker is steady, then ``cleanup()`` (purge what the try left).
    Rows of a last try during which the broker restarted are marked ``broker_restarted``; a
    last try that raised raises."""
    for n in range(1, tries + 1):
        try:
            async with BrokerWatch() as watch:
                result = await attempt()
            if not watch.restarted:
                return result
            progress(f"{label}: the broker restarted meanwhile (try {n} of {tries})")
        except BROKER_DOWN as exc:
            if n == tries:
                raise
            progress(f"{label}: broker connection lost (try {n} of {tries}): {exc!r}")
        await wait_for_broker(timeout=300)
        if cleanup is not None:
            with contextlib.suppress(*BROKER_DOWN):
                await cleanup()
    for row in result if isinstance(result, list) else [result]:
        row.extra["broker_restarted"] = True
    return result


async def measure_drain(
    d: Drain, tasks: int, prequeue: Callable[[int], Awaitable[object]]
) -> Result:
    """Queue ``tasks`` with ``prequeue``, start the workers, time the drain; sample CPU.

    Rate: tasks / (last task done - first task done) (with ``d.hits`` 2, tasks that count
    their start too: from the first task's start); the time from process start to the first
    counted hit (imports, connect, declare) is ``startup_s``. CPU per task: worker trees and broker,
    from the moment every worker process has run a task to the last task, divided by the tasks
    done in between. After the workers stop, the queue must be empty (``left_in_queue``).
    Lines the workers wrote from then to the last task are ``log_lines``; too many make the row
    invalid (``log_guard``).
    A failure gives a failed row (and purges the queue); a broker restart, another try.
    """
    label = f"{d.system} {d.scenario} [{d.variant}]"
    try:
        return await steadily(
            label, lambda: _drain_once(d, tasks, prequeue), lambda: purge(d.queue)
        )
    except BROKER_DOWN as exc:
        return failed(d.system, d.scenario, d.variant, d.config, tasks, exc, d.role)


async def _drain_once(d: Drain, tasks: int, prequeue: Callable[[int], Awaitable[object]]) -> Result:
    label = f"{d.system} {d.scenario} [{d.variant}]"
    try:
        progress(f"{label}: queueing {tasks} tasks")
        await prequeue(tasks)
        workers = Workers(d.commands, d.env)
        try:
            timeout = 120 + tasks / 100
            start_hits, before = await workers.wait_running(d.processes, tasks * d.hits, timeout)
            hits, first, last = await workers.wait_count(tasks * d.hits, label, timeout)
            after = cpu.Sample(workers.pids)
            lines, logged_hits = workers.lines_since_running(hits)
        finally:
            await workers.stop()
        left = await queue_depth(d.queue)
        start_count, count, logged_tasks = (
            start_hits // d.hits,
            hits // d.hits,
            logged_hits // d.hits,
        )
    except (RuntimeError, TimeoutError) as exc:  # a worker died or stalled: a failed row
        with contextlib.suppress(*BROKER_DOWN):
            await purge(d.queue)
        return failed(d.system, d.scenario, d.variant, d.config, tasks, exc, d.role)
    window = count - start_count
    row = rate(
        d.system,
        d.scenario,
        d.variant,
        d.config,
        tasks,
        (last - first) / 1e9,
        d.role,
        counted=count,
        startup_s=round((first - workers.started_ns) / 1e9, 3),
        left_in_queue=left,
        processes=d.processes,
        cpu_window_tasks=window,
        log_lines=lines,
        **cpu.per_task_us(before, after, window),
    )
    row.invalid = log_guard.invalid_reason(lines, logged_tasks)
    if row.invalid:
        progress(f"{label}: {row.invalid}")
    return row
