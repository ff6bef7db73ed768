"""Threads vs processes for plain ``def`` tasks: the cost of a no-op task in each pool, and
CPU-bound work with 1 and 2 processes (and 2 threads, which share one GIL).

    .venv/bin/python -m benchmarks.pool [--tasks 2000] [--cpu-tasks 8] [--iterations 3000000]

Each figure is the wall time from the first send to the last result (sent at once, results
over AMQP), through a real worker in this process on uvloop, with the broker on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
import uuid

from benchmarks.bench_apps.pool_app import app, noop_thread
from taskq import App, Worker
from taskq.cli.common import run_loop
from taskq.pool import Job, ProcessPool


async def _batch(name: str, count: int, args: tuple[int, ...], **configure: object) -> float:
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    app.configure(prefix=prefix, **configure)
    client = App("client", broker=app.settings.broker, prefix=prefix)
    worker = Worker(app, app_spec="benchmarks.bench_apps.pool_app:app")
    running = asyncio.create_task(worker.run())
    await worker.ready.wait()
    try:
        async with client:
            began = time.perf_counter()
            handles = await client.send_many([(name, args)] * count)
            for handle in handles:
                await handle.result(timeout=600)
            return time.perf_counter() - began
    finally:
        worker.stop()
        await running


async def _noop_progress(fraction: float, message: str | None) -> None:
    """Progress reports go nowhere here."""


async def _direct(count: int) -> tuple[float, float]:
    """Seconds per no-op call, one at a time, without the broker: a thread of a pool, and a
    round trip to a pool process (frame out, validate, run, frame back)."""
    threads = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    for _ in range(count):
        await loop.run_in_executor(threads, noop_thread.func)
    in_thread = (time.perf_counter() - began) / count
    threads.shutdown()
    pool = ProcessPool("benchmarks.bench_apps.pool_app:app", 1)
    await pool.start()
    job = Job("noop_process", [], {}, 1, "bench", "default", None, None, None, None)
    try:
        began = time.perf_counter()
        for _ in range(count):
            await pool.run(job, None, _noop_progress)
        in_process = (time.perf_counter() - began) / count
    finally:
        await pool.close()
    return in_thread, in_process


async def main(tasks: int, cpu_tasks: int, iterations: int) -> None:
    in_thread, in_process = await _direct(tasks)
    print(
        f"no-op call without the broker: thread {in_thread * 1e6:.0f} us, "
        f"process {in_process * 1e6:.0f} us ({tasks} calls one at a time)"
    )
    runs = [
        ("no-op, threads (8)", "noop_thread", tasks, (), {}),
        ("no-op, processes (2)", "noop_process", tasks, (), {"sync_workers": 2}),
        ("cpu, threads (2)", "spin_thread", cpu_tasks, (iterations,), {"threads": 2}),
        ("cpu, processes (1)", "spin_process", cpu_tasks, (iterations,), {"sync_workers": 1}),
        ("cpu, processes (2)", "spin_process", cpu_tasks, (iterations,), {"sync_workers": 2}),
    ]
    for label, name, count, args, configure in runs:
        seconds = await _batch(name, count, args, concurrency=16, **configure)
        print(
            f"{label:24} {count:6d} tasks {seconds:7.2f} s  {count / seconds:8.1f} tasks/s  "
            f"{seconds / count * 1e3:7.3f} ms/task"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--cpu-tasks", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=3_000_000)
    options = parser.parse_args()
    run_loop(main(options.tasks, options.cpu_tasks, options.iterations))
