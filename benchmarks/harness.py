"""What every scenario shares: results, progress, worker subprocesses, the completion counter,
queue checks, machine facts, and the table / JSON / PNG output."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika

from .bench_apps import counter

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
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


@dataclasses.dataclass
class Options:
    """What one harness run measures."""

    tasks: int
    roundtrips: int
    fanout: int
    sequential_cap: int
    scenarios: list[str]
    systems: list[str]
    concurrency: int = 64


def rate(system: str, scenario: str, variant: str, config: str, tasks: int, seconds: float,
         **extra: Any) -> Result:
    """A throughput result."""
    counted = extra.pop("counted", tasks)
    return Result(system, scenario, variant, config, tasks, seconds, counted,
                  tasks / seconds if seconds > 0 else 0.0, extra=extra)


def latency(system: str, scenario: str, variant: str, config: str, samples: Sequence[float],
            seconds: float) -> Result:
    """A latency result from per-call seconds: p50, p90, p99 in milliseconds."""
    ms = sorted(s * 1000 for s in samples)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return Result(system, scenario, variant, config, len(ms), seconds, len(ms),
                  len(ms) / seconds if seconds else 0.0,
                  {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                   "mean": statistics.fmean(ms)})


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
        full_env = {**os.environ, **env, "BENCH_COUNTER_DIR": self.counters.path,
                    "PYTHONPATH": str(REPO)}
        self.started_ns = time.monotonic_ns()
        for command in commands:
            log = Path(self.counters.path + f"-{len(self.logs)}.log")
            self.logs.append(log)
            with log.open("wb") as out:
                self.processes.append(subprocess.Popen(
                    list(command), cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True))  # own group: forked children die with it

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {process.args!r} exited with {process.returncode}:\n{self.output()}")

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


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def drain(label: str, workers: Workers, tasks: int, queue: str) -> dict[str, Any]:
    """Wait for ``workers`` to count ``tasks``; return the timings and the queue check.

    Timing: from the first task done (the worker is up and consuming) to the last; the time
    from process start to the first task (imports, connect, declare) is reported apart.
    """
    try:
        count, first, last = await workers.wait_count(tasks, label, timeout=120 + tasks / 100)
    finally:
        await workers.stop()
    left = await queue_depth(queue)
    return {
        "counted": count,
        "seconds": (last - first) / 1e9,
        "startup_s": round((first - workers.started_ns) / 1e9, 3),
        "left_in_queue": left,
    }


# -- the broker --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain channel on a fresh connection (for checks and cleanup)."""
    connection = await aio_pika.connect(BROKER)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def queue_depth(name: str) -> int | None:
    """Ready messages in queue ``name`` (passive declare), or None if it does not exist."""
    try:
        async with channel() as ch:
            queue = await ch.declare_queue(name, passive=True)
            return queue.declaration_result.message_count or 0
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return None


async def delete(queues: Sequence[str] = (), exchanges: Sequence[str] = ()) -> None:
    """Delete queues and exchanges (missing ones are fine)."""
    async with channel() as ch:
        for q in queues:
            await ch.queue_delete(q)
        for e in exchanges:
            await ch.exchange_delete(e)


async def purge(name: str) -> None:
    """Remove the ready messages of queue ``name``."""
    async with channel() as ch:
        queue = await ch.declare_queue(name, passive=True)
        await queue.purge()


# -- machine and output ------------------------------------------------------------------------


async def machine() -> dict[str, Any]:
    """Cores, RabbitMQ version, Python, loop, date."""
    connection = await aio_pika.connect(BROKER)
    try:
        props = connection.transport.connection.server_properties  # type: ignore[union-attr]
        version = props.get("version", "?")
        version = version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()
    return {
        "cores": os.cpu_count(),
        "rabbitmq": version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


CEILING = {  # scenario -> the raw aio-pika variant every other figure is compared with
    "enqueue": "pipelined confirms",
    "drain": "ack each",
    "drain2": "ack each",
    "roundtrip": "direct reply-to",
    "fanout": "direct reply-to",
}


def add_fractions(results: list[Result]) -> None:
    """Fill ``fraction_of_ceiling``: rate / raw rate, or raw p50 / p50 for latencies
    (so 1.0 is the ceiling and lower is worse, always)."""
    ceilings = {r.scenario: r for r in results
                if r.system == "raw" and CEILING.get(r.scenario) == r.variant}
    for r in results:
        ceiling = ceilings.get(r.scenario)
        if ceiling is None:
            continue
        if r.latency_ms and ceiling.latency_ms:
            r.fraction_of_ceiling = ceiling.latency_ms["p50"] / r.latency_ms["p50"]
        elif r.tasks_per_s and ceiling.tasks_per_s:
            r.fraction_of_ceiling = r.tasks_per_s / ceiling.tasks_per_s


def table(results: list[Result]) -> str:
    """An aligned text table (also valid Markdown)."""
    head = ["scenario", "system", "variant", "tasks", "tasks/s", "p50 / p90 / p99 ms",
            "vs raw", "config"]
    rows = [head]
    for r in results:
        lat = ("{p50:.2f} / {p90:.2f} / {p99:.2f}".format(**r.latency_ms)
               if r.latency_ms else "")
        frac = f"{r.fraction_of_ceiling:.2f}" if r.fraction_of_ceiling is not None else ""
        rows.append([r.scenario, r.system, r.variant, str(r.tasks),
                     f"{r.tasks_per_s:,.0f}" if r.tasks_per_s else "", lat, frac, r.config])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def to_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    return {"machine": meta, "results": [dataclasses.asdict(r) for r in results]}


def plot(results: list[Result], meta: dict[str, Any], path: str) -> None:
    """Bars of tasks/s per system per scenario, and round-trip latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput = [r for r in results if r.latency_ms is None and r.tasks_per_s
                  and r.scenario != "memory"]
    lat = [r for r in results if r.latency_ms is not None and r.scenario == "roundtrip"]
    groups = list(dict.fromkeys(r.scenario for r in throughput))
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [3, 1]})
    ax = axes[0]
    systems = list(dict.fromkeys(r.system for r in results))
    colors = dict(zip(systems, plt.cm.tab10.colors, strict=False))  # type: ignore[attr-defined]
    x = 0.0
    ticks, labels = [], []
    for group in groups:
        rows = [r for r in throughput if r.scenario == group]
        start = x
        for r in rows:
            ax.bar(x, r.tasks_per_s, color=colors[r.system], width=0.8,
                   label=r.system if r.system not in ax.get_legend_handles_labels()[1] else None)
            ax.text(x, (r.tasks_per_s or 0) * 1.01, f"{(r.tasks_per_s or 0) / 1000:.1f}k\n"
                    f"{r.variant}", ha="center", va="bottom", fontsize=6.5, rotation=90)
            x += 1
        ticks.append((start + x - 1) / 2)
        labels.append(group)
        x += 1.2
    ax.set_xticks(ticks, labels)
    ax.set_ylabel("tasks/s (higher is better)")
    top = max((r.tasks_per_s or 0) for r in throughput) if throughput else 1
    ax.set_ylim(0, top * 1.45)
    ax.legend(loc="upper right")
    ax.set_title("throughput, no-op tasks, persistent messages")
    ax2 = axes[1]
    for i, r in enumerate(lat):
        assert r.latency_ms is not None
        ax2.bar(i - 0.2, r.latency_ms["p50"], width=0.4, color=colors[r.system])
        ax2.bar(i + 0.2, r.latency_ms["p99"], width=0.4, color=colors[r.system], alpha=0.5)
        ax2.text(i, r.latency_ms["p99"], f"p50 {r.latency_ms['p50']:.2f}\np99 "
                 f"{r.latency_ms['p99']:.2f}", ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(range(len(lat)), [r.system for r in lat])
    ax2.set_ylabel("ms (lower is better; solid p50, light p99)")
    ax2.set_title("round trip, one task at a time")
    if lat:
        ax2.set_ylim(0, max(r.latency_ms["p99"] for r in lat if r.latency_ms) * 1.3)
    fig.suptitle(f"taskq benchmarks - {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, "
                 f"Python {meta['python']}, {meta['date'][:10]} (shared machine: noisy)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
