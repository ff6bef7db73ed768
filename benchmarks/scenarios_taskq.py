"""taskq scenarios: enqueue (gather, batch, sequential), drain (1 and 2 worker processes),
round trip, fan-out, and worker memory."""

from __future__ import annotations

import sys
import time
from typing import Any

from taskq import App
from taskq.results.base import TaskState

from . import harness as h
from .harness import Options, Result

WORKER_MODULE = "benchmarks.bench_apps.taskq_app:app"


class NoReplyStore:
    """A result store that asks for no replies: tasks queued for a drain carry no reply_to
    (as from a producer that does not wait for results), so workers publish no result."""

    durable = False

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def reply_to(self) -> str | None:
        return None
    def track(self, task_id: str, task_name: str) -> None: ...
    def forget(self, task_id: str) -> None: ...
    async def record(self, state: TaskState, *, reply_to: str | None) -> None: ...
    async def get(self, task_id: str) -> TaskState | None:
        return None
    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        raise NotImplementedError


def make_app(prefix: str) -> App:
    from .bench_apps import taskq_app

    app = taskq_app.app
    app.configure(prefix=prefix, broker=h.BROKER)
    return app


def worker_command(opts: Options) -> list[str]:
    return [sys.executable, "-m", "taskq.cli.worker", WORKER_MODULE, "--log-level", "warning",
            "--concurrency", str(opts.concurrency)]


def worker_env(prefix: str) -> dict[str, str]:
    return {"TASKQ_PREFIX": prefix, "TASKQ_BROKER": h.BROKER}


async def prequeue(app: App, tasks: int, chunk: int = 5000) -> None:
    """Queue ``tasks`` no-op tasks with no reply_to, through the batch API."""
    transport, _ = await app.connect("taskq-bench:prequeue")
    app.attach(transport, NoReplyStore())
    try:
        noop = app.tasks["noop"]
        for start in range(0, tasks, chunk):
            await noop.map(range(start, min(tasks, start + chunk)))
    finally:
        app.detach()
        await transport.close()


async def enqueue(app: App, opts: Options) -> list[Result]:
    n, seq = opts.tasks, min(opts.tasks, opts.sequential_cap)
    queue = app.names.work_queue("default")
    results = []
    async with app:
        noop = app.tasks["noop"]
        await noop.delay(-1)  # declare the topology outside the measurement
        await h.purge(queue)
        variants: list[tuple[str, int, Any]] = [
            ("gather delay()", n, lambda: _gather(noop, n)),
            ("batch map()", n, lambda: noop.map(range(n))),
            ("await each delay()", seq, lambda: _sequential(noop, seq)),
        ]
        for variant, count, run in variants:
            h.progress(f"taskq enqueue: {variant}, {count} tasks")
            start = time.perf_counter()
            handles = await run()
            elapsed = time.perf_counter() - start
            assert len(handles) == count
            depth = await h.queue_depth(queue)
            results.append(h.rate("taskq", "enqueue", variant, "confirms on, persistent",
                                  count, elapsed, counted=depth))
            await h.purge(queue)
    return results


async def _gather(noop: Any, n: int) -> list[Any]:
    import asyncio

    return await asyncio.gather(*(noop.delay(i) for i in range(n)))


async def _sequential(noop: Any, n: int) -> list[Any]:
    return [await noop.delay(i) for i in range(n)]


async def drain(app: App, opts: Options, processes: int) -> Result:
    scenario = "drain" if processes == 1 else f"drain{processes}"
    h.progress(f"taskq {scenario}: queueing {opts.tasks} tasks")
    await prequeue(app, opts.tasks)
    command = worker_command(opts)
    if processes > 1:  # one supervisor running N worker processes, as a user would
        command += ["--processes", str(processes)]
    workers = h.Workers([command], worker_env(app.settings.prefix))
    h.progress(f"taskq {scenario}: taskq-worker --processes {processes} started")
    timing = await h.drain(f"taskq {scenario}", workers, opts.tasks,
                           app.names.work_queue("default"))
    seconds = timing.pop("seconds")
    return h.rate("taskq", scenario, f"taskq-worker --processes {processes}",
                  f"--concurrency {opts.concurrency}, uvloop, no reply_to", opts.tasks,
                  seconds, **timing)


async def with_worker(app: App, opts: Options) -> list[Result]:
    """Round trip and fan-out against one running taskq-worker process."""
    results = []
    workers = h.Workers([worker_command(opts)], worker_env(app.settings.prefix))
    try:
        async with app:
            noop = app.tasks["noop"]
            await (await noop.delay(0)).result(timeout=60)  # worker up and warm
            if "roundtrip" in opts.scenarios:
                results.append(await _roundtrip(noop, opts.roundtrips))
            if "fanout" in opts.scenarios:
                results.append(await _fanout(noop, opts.fanout))
    finally:
        await workers.stop()
    return results


async def _roundtrip(noop: Any, n: int) -> Result:
    h.progress(f"taskq roundtrip: {n} round trips")
    samples = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        assert await (await noop.delay(i)).result(timeout=30) == i
        samples.append(time.perf_counter() - t0)
    return h.latency("taskq", "roundtrip", "delay() + result()", "AMQP results (reply queue)",
                     samples, time.perf_counter() - start)


async def _fanout(noop: Any, n: int) -> Result:
    import asyncio

    h.progress(f"taskq fanout: {n} concurrent sends + results")
    start = time.perf_counter()
    handles = await asyncio.gather(*(noop.delay(i) for i in range(n)))
    values = await asyncio.gather(*(handle.result(timeout=120) for handle in handles))
    elapsed = time.perf_counter() - start
    assert values == list(range(n))
    return h.rate("taskq", "fanout", "gather delay() + result()", "AMQP results", n, elapsed,
                  counted=len(values))


async def memory(app: App, opts: Options) -> Result:
    """Worker RSS at start, after N/2 and after N tasks (queued in chunks while it runs)."""
    n = opts.tasks
    workers = h.Workers([worker_command(opts)], worker_env(app.settings.prefix))
    try:
        await prequeue(app, 1)
        await workers.wait_count(1, "taskq memory warm-up", timeout=60)
        samples = {"start": workers.rss_kb()[0]}
        done = 1
        for label, target in (("half", n // 2), ("end", n)):
            while done < target:
                chunk = min(10_000, target - done)
                await prequeue(app, chunk)
                done += chunk
                await workers.wait_count(done, f"taskq memory {label}", timeout=120 + chunk / 100)
            samples[label] = workers.rss_kb()[0]
        count = workers.counters.read()[0]
    finally:
        await workers.stop()
    growth = (samples["end"] - samples["half"]) / samples["half"]
    h.progress(f"taskq memory: RSS kB {samples} (N/2 -> N: {growth:+.1%})")
    return h.Result("taskq", "memory", "worker RSS", "VmRSS from /proc/PID/status", n, 0.0,
                    count, extra={"rss_kb": samples, "growth_half_to_end": round(growth, 4),
                                  "growth_start_to_end": round(
                                      (samples["end"] - samples["start"]) / samples["start"], 4)})


async def run(opts: Options, prefix: str) -> list[Result]:
    """Every selected taskq scenario; the topology of ``prefix`` is deleted afterwards."""
    app = make_app(prefix)
    results: list[Result] = []
    if "enqueue" in opts.scenarios:
        results += await enqueue(app, opts)
    for processes, scenario in ((1, "drain"), (2, "drain2")):
        if scenario in opts.scenarios:
            results.append(await drain(app, opts, processes))
    if {"roundtrip", "fanout"} & set(opts.scenarios):
        results += await with_worker(app, opts)
    if "memory" in opts.scenarios:
        results.append(await memory(app, opts))
    return results
