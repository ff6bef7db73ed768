"""How long ``taskq-worker --sync-pool process`` takes to exit on SIGTERM while a pool process
runs a task that never ends (``time.sleep(3600)``), and whether any pool process outlives it.

The documented bound: the worker exits within ``--shutdown-timeout`` plus 2 s, and no pool
process remains. The tests check the behaviour (the task goes back to its queue, no child is
left); the time is measured here, since no timing figure decides a test.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from . import broker, cpu
from . import harness as h
from .bench_apps.pool_app import make_app
from .scenarios_taskq import shown, worker_command, worker_env

POOL_APP = "benchmarks.bench_apps.pool_app:app"
STOP_WAIT = 60.0  # seconds to wait for the exit before calling it a failure


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def command(shutdown_timeout: float) -> list[str]:
    """The worker measured: one pool process, plain ``def`` tasks in it."""
    return [
        *worker_command(1, app=POOL_APP),
        "--sync-pool",
        "process",
        "--sync-workers",
        "1",
        "--shutdown-timeout",
        f"{shutdown_timeout:g}",
    ]


async def once(prefix: str, shutdown_timeout: float) -> dict[str, Any]:
    """Start the worker, send ``stuck``, wait until it runs, SIGTERM, time the exit."""
    workers = h.Workers([command(shutdown_timeout)], worker_env(prefix))
    process = workers.processes[0]
    try:
        async with make_app(prefix=prefix, broker=broker.BROKER) as app:
            await app.tasks["stuck"].options(ignore_result=True).delay()
        await workers.wait_count(1, "shutdown: stuck task started", timeout=120)
        children = cpu.tree(process.pid)[1:]
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        while process.poll() is None and time.monotonic() - began < STOP_WAIT:
            await asyncio.sleep(0.005)
        seconds = time.monotonic() - began
        left = [pid for pid in children if alive(pid)]
    finally:
        await workers.stop()
    if process.returncode is None:
        raise TimeoutError(f"the worker still ran {STOP_WAIT:.0f} s after SIGTERM")
    return {
        "seconds": round(seconds, 3),
        "exit_code": process.returncode,
        "pool_processes": len(children),
        "pool_processes_left": len(left),
    }


async def measure(prefix: str, shutdown_timeout: float, repeats: int) -> dict[str, Any]:
    """``repeats`` tries (each under its own prefix): every try, and min/median/max."""
    tries = []
    for n in range(repeats):
        h.progress(f"shutdown with a stuck pool process: try {n + 1} of {repeats}")
        tries.append(await once(f"{prefix}sd{n}", shutdown_timeout))
        h.progress(f"  exit after {tries[-1]['seconds']:.2f} s: {tries[-1]}")
    seconds = [t["seconds"] for t in tries]
    return {
        "command": shown(command(shutdown_timeout), POOL_APP),
        "shutdown_timeout": shutdown_timeout,
        "bound_s": shutdown_timeout + 2,
        "tries": tries,
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "within_bound": all(s <= shutdown_timeout + 2 for s in seconds),
        "pool_processes_left": sum(t["pool_processes_left"] for t in tries),
    }
