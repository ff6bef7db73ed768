"""The fresh flow of ``benchmarks.retry_storm``: ``fresh(i)`` sent at a steady rate.

:func:`produce` runs in the harness's process, or (``--producer-process``) here in a process
of its own, as an application's tasks come from other processes than a bulk job's: run as
``python -m benchmarks.bench_apps.storm_producer RATE`` with the worker's environment, it
sends storm_app's ``fresh`` tasks, stamps each send ('S', see stamps) just before its
``delay()``, and stops at SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

from taskq import Task
from taskq.cli.common import run_loop

from .stamps import FLUSH_EVERY, stamp

TICK = 0.01  # the producer's pace: a batch every 10 ms keeps 1,000/s even on a busy loop


async def produce(
    fresh: Task[[int], None], rate: float, stop: asyncio.Event, sending: Callable[[int], None]
) -> int:
    """Send ``fresh`` tasks at ``rate`` per second until ``stop``; return how many were sent.
    ``sending(i)`` is called just before each ``delay()``.

    Paced by the loop clock: each tick sends what is due since the last one, without waiting
    for the previous batch's confirms, so a slow broker shows as wait, not as a lower rate."""

    async def send(i: int) -> None:
        sending(i)
        await fresh.delay(i)

    async def batch(first: int, end: int) -> None:
        await asyncio.gather(*(send(i) for i in range(first, end)))

    loop = asyncio.get_running_loop()
    began, sent = loop.time(), 0
    async with asyncio.TaskGroup() as group:
        while not stop.is_set():
            due = int((loop.time() - began) * rate)
            if due > sent:
                group.create_task(batch(sent, due))
                sent = due
            await asyncio.sleep(TICK)
    return sent


async def _main(rate: float) -> int:
    from .storm_app import app, fresh  # configured by the environment, as the worker's

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with app:
        await app.transport.declare_work_queue("default")
        print("producing", flush=True)
        sent = await produce(fresh, rate, stop, lambda i: stamp("S", str(i), buffered=True))
    await asyncio.sleep(2 * FLUSH_EVERY)  # the last buffered stamps are written
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_loop(_main(float(sys.argv[1]))))
