"""taskq scenarios, through the public API and the ``taskq-worker`` CLI only: enqueue (gather,
batch, sequential), drain (1 and 2 worker processes; the natural API at --concurrency 1000 and
64, and tasks with no reply_to), round trip and fan-out (AMQP and Redis results), memory."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import broker, cpu
from . import harness as h
from .bench_apps.taskq_app import make_app
from .harness import Options, Result

WORKER_APP = "benchmarks.bench_apps.taskq_app:app"
NATURAL = (
    "client: asyncio.gather of delay() on an App with default settings (AMQP results: "
    "every task carries reply_to), asks for no result, closes; "
)
NO_REPLY = (
    "client: map() in chunks of 5,000 with options(ignore_result=True): no reply_to "
    "(a producer that never waits for results); "
)


def worker_command(concurrency: int, processes: int = 1, app: str = WORKER_APP) -> list[str]:
    """``taskq-worker`` for ``app`` with default settings but these (log level: warning)."""
    script = shutil.which("taskq-worker", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "taskq.cli.worker"]
    command += [app, "--concurrency", str(concurrency), "--log-level", "warning"]
    return command + (["--processes", str(processes)] if processes > 1 else [])


def shown(command: list[str], app: str = WORKER_APP) -> str:
    """A worker command as a user would type it."""
    args = command[command.index(app) :]
    return "taskq-worker " + " ".join(args) + ", uvloop"


def work_queue(prefix: str) -> str:
    """The name of the benchmark's work queue under ``prefix``."""
    return make_app(prefix=prefix).names.work_queue("default")


async def delete_topology(prefix: str) -> None:
    """Delete what taskq declared under ``prefix`` (what is missed: ``broker.sweep`` later)."""
    try:
        from taskq.topology import Names, every_name
    except ImportError:  # renamed internals: the sweep by prefix still cleans up
        return
    queues, exchanges = every_name(Names(prefix), ["default"])
    await broker.delete(queues=queues, exchanges=exchanges)


def worker_env(prefix: str, results: str = "amqp") -> dict[str, str]:
    return {"TASKQ_PREFIX": prefix, "TASKQ_BROKER": broker.BROKER, "TASKQ_RESULTS": results}


async def send_natural(prefix: str, tasks: int) -> None:
    """The natural API: default App settings, a gather of delay(), no result asked, close."""
    async with make_app(prefix=prefix, broker=broker.BROKER) as app:
        noop = app.tasks["noop"]
        await asyncio.gather(*(noop.delay(i) for i in range(tasks)))


async def send_no_reply(prefix: str, tasks: int, chunk: int = 5000) -> None:
    """Queue ``tasks`` no-op tasks sent with ``ignore_result`` (no reply_to, nothing recorded:
    a producer that never waits for results), through the batch API."""
    async with make_app(prefix=prefix, broker=broker.BROKER) as app:
        noop = app.tasks["noop"].options(ignore_result=True)
        for start in range(0, tasks, chunk):
            await noop.map(range(start, min(tasks, start + chunk)))


async def enqueue(prefix: str, opts: Options) -> list[Result]:
    n, seq = opts.tasks, min(opts.tasks, opts.sequential_cap)
    results = []
    async with make_app(prefix=prefix, broker=broker.BROKER) as app:
        noop = app.tasks["noop"]
        queue = app.names.work_queue(app.settings.default_queue)
        await noop.delay(-1)  # declare the topology outside the measurement
        await broker.purge(queue)
        variants: list[tuple[str, str, int, Callable[[], Awaitable[list[Any]]]]] = [
            (
                "headline",
                "gather delay()",
                n,
                lambda: asyncio.gather(*(noop.delay(i) for i in range(n))),
            ),
            ("batch", "batch map()", n, lambda: noop.map(range(n))),
            ("", "await each delay()", seq, lambda: _sequential(noop, seq)),
        ]
        for role, variant, count, run in variants:
            h.progress(f"taskq enqueue: {variant}, {count} tasks")
            before, own = cpu.Sample([]), os.times()
            start = time.perf_counter()
            handles = await run()
            elapsed = time.perf_counter() - start
            after, spent = cpu.Sample([]), os.times()
            assert len(handles) == count
            depth = await broker.queue_depth(queue)
            results.append(
                h.rate(
                    "taskq",
                    "enqueue",
                    variant,
                    "default App settings (confirms always on, persistent, AMQP results)",
                    count,
                    elapsed,
                    role,
                    counted=depth,
                    # This process is the client: its CPU per task shows what the send path
                    # costs here, the broker's what it costs there (the two share 2 cores).
                    client_cpu_us=round(
                        (spent.user + spent.system - own.user - own.system) / count * 1e6, 1
                    ),
                    broker_cpu_us=cpu.per_task_us(before, after, count)["broker_cpu_us"],
                )
            )
            await broker.purge(queue)
    return results


async def _sequential(noop: Any, n: int) -> list[Any]:
    return [await noop.delay(i) for i in range(n)]


def drains(
    prefix: str, opts: Options, processes: int
) -> list[tuple[h.Drain, Callable[[int], Awaitable[None]]]]:
    """The taskq drains of one process count: (what to measure, how to queue the tasks)."""
    scenario = "drain" if processes == 1 else f"drain{processes}"
    queue = work_queue(prefix)
    out = []
    for role, kind, concurrency, client in (
        ("headline", "natural API", opts.prefetch, NATURAL),
        ("c64", "natural API", opts.concurrency, NATURAL),
        ("no-reply", "no reply_to", opts.prefetch, NO_REPLY),
    ):
        command = worker_command(concurrency, processes)
        drain = h.Drain(
            "taskq",
            scenario,
            f"{kind}, --concurrency {concurrency}",
            client + shown(command),
            [command],
            worker_env(prefix),
            queue,
            processes,
            role,
        )
        send = send_natural if kind == "natural API" else send_no_reply
        out.append((drain, lambda n, send=send: send(prefix, n)))
    return out


async def with_worker(prefix: str, opts: Options, results_spec: str) -> list[Result]:
    """Round trip and fan-out against one running taskq-worker process."""
    store = "Redis" if results_spec.startswith("redis") else "AMQP"
    role = "redis" if store == "Redis" else "headline"
    command = worker_command(opts.prefetch)
    config = f"App(results={results_spec!r}); {shown(command)}"
    results = []
    workers = h.Workers([command], worker_env(prefix, results_spec))
    try:
        async with make_app(prefix=prefix, broker=broker.BROKER, results=results_spec) as app:
            noop = app.tasks["noop"]
            await (await noop.delay(0)).result(timeout=60)  # worker up and warm
            if "roundtrip" in opts.scenarios:
                h.progress(f"taskq roundtrip ({store}): {opts.roundtrips} round trips")
                samples, seconds = await _roundtrip(noop, opts.roundtrips)
                results.append(
                    h.latency(
                        "taskq",
                        "roundtrip",
                        f"{store} results: delay() + result()",
                        config,
                        samples,
                        seconds,
                        role,
                    )
                )
            if "fanout" in opts.scenarios:
                h.progress(f"taskq fanout ({store}): {opts.fanout} concurrent sends + results")
                seconds = await _fanout(noop, opts.fanout)
                results.append(
                    h.rate(
                        "taskq",
                        "fanout",
                        f"{store} results: gather delay() + result()",
                        config,
                        opts.fanout,
                        seconds,
                        role,
                    )
                )
    except (RuntimeError, TimeoutError) as exc:
        results += [
            h.failed("taskq", s, f"{store} results", config, opts.count(s), exc, role)
            for s in ("roundtrip", "fanout")
            if s in opts.scenarios
        ]
    finally:
        await workers.stop()
    return results


async def _roundtrip(noop: Any, n: int) -> tuple[list[float], float]:
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        assert await (await noop.delay(i)).result(timeout=30) == i
        samples.append(time.perf_counter() - t0)
    return samples, time.perf_counter() - start


async def _fanout(noop: Any, n: int) -> float:
    start = time.perf_counter()
    handles = await asyncio.gather(*(noop.delay(i) for i in range(n)))
    values = await asyncio.gather(*(handle.result(timeout=120) for handle in handles))
    elapsed = time.perf_counter() - start
    assert values == list(range(n))
    return elapsed


async def memory(prefix: str, opts: Options) -> Result:
    """Worker RSS at start, after N/2 and after N tasks (queued in chunks while it runs)."""
    n = opts.tasks
    command = worker_command(opts.prefetch)
    workers = h.Workers([command], worker_env(prefix))
    try:
        await send_no_reply(prefix, 1)
        await workers.wait_count(1, "taskq memory warm-up", timeout=60)
        samples = {"start": workers.rss_kb()[0]}
        done = 1
        for label, target in (("half", n // 2), ("end", n)):
            while done < target:
                chunk = min(10_000, target - done)
                await send_no_reply(prefix, chunk)
                done += chunk
                await workers.wait_count(done, f"taskq memory {label}", timeout=120 + chunk / 100)
            samples[label] = workers.rss_kb()[0]
        count = workers.counters.read()[0]
    finally:
        await workers.stop()
    growth = (samples["end"] - samples["half"]) / samples["half"]
    h.progress(f"taskq memory: RSS kB {samples} (N/2 -> N: {growth:+.1%})")
    return h.Result(
        "taskq",
        "memory",
        "worker RSS",
        f"VmRSS from /proc/PID/status; {NO_REPLY}{shown(command)}",
        n,
        0.0,
        count,
        role="headline",
        extra={
            "rss_kb": samples,
            "growth_half_to_end": round(growth, 4),
            "growth_start_to_end": round((samples["end"] - samples["start"]) / samples["start"], 4),
        },
    )


async def run(opts: Options, prefix: str) -> list[Result]:
    """Every selected taskq scenario under ``prefix`` (the caller deletes its topology)."""
    results: list[Result] = []
    if "enqueue" in opts.scenarios:
        queue = work_queue(prefix)
        results += await h.steadily(
            "taskq enqueue", lambda: enqueue(prefix, opts), lambda: broker.purge(queue)
        )
    for processes, scenario in ((1, "drain"), (2, "drain2")):
        if scenario in opts.scenarios:
            for drain, send in drains(prefix, opts, processes):
                results.append(await h.measure_drain(drain, opts.tasks, send))
    if {"roundtrip", "fanout"} & set(opts.scenarios):
        for spec in ("amqp", broker.REDIS):
            results += await h.steadily(
                f"taskq roundtrip/fanout ({spec})",
                lambda spec=spec: with_worker(prefix, opts, spec),
            )
        await broker.delete_redis_keys(f"{prefix}:")
    if "memory" in opts.scenarios:
        results.append(await memory(prefix, opts))
    return results
