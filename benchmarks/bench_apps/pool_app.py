"""Tasks for benchmarks/pool.py: a no-op and a CPU-bound loop, in threads and in processes."""

from __future__ import annotations

import os

from taskq import App

app = App("poolbench", broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"))


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


@app.task(pool="thread")
def noop_thread() -> None:
    """Nothing, in the thread pool."""


@app.task(pool="process")
def noop_process() -> None:
    """Nothing, in the process pool."""


@app.task(pool="thread")
def spin_thread(iterations: int) -> int:
    """Pure Python additions (holding the GIL), in the thread pool."""
    return _spin(iterations)


@app.task(pool="process")
def spin_process(iterations: int) -> int:
    """Pure Python additions, in the process pool."""
    return _spin(iterations)
