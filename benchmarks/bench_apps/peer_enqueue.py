"""Enqueue N no-op tasks through a peer's own client, in a process of its own (each peer's
module-level configuration comes from the environment). Prints the seconds taken.

Usage: python -m benchmarks.bench_apps.peer_enqueue SYSTEM N [warm] [gather]
With ``warm``, one extra task (argument -1) is sent first, outside the measurement; with
``gather`` (taskiq), the sends are one asyncio.gather instead of a loop of awaits.
With BENCH_SPIN=K in the environment (Celery and Dramatiq), each task is ``spin(K)``, the
CPU-bound task of benchmarks/pool.py, instead of ``noop(i)``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

WARM = "warm" in sys.argv[3:]
SPIN = int(os.environ.get("BENCH_SPIN", "0"))


def celery(n: int) -> float:
    from .celery_app import app, noop, spin

    if WARM:
        noop.delay(-1)  # connect and declare outside the measurement
    start = time.perf_counter()
    for i in range(n):
        if SPIN:
            spin.delay(SPIN)
        else:
            noop.delay(i)
    seconds = time.perf_counter() - start
    app.close()  # confirms off: see dramatiq() below
    return seconds


def dramatiq(n: int) -> float:
    from .dramatiq_app import broker, noop, spin

    if WARM:
        noop.send(-1)
    start = time.perf_counter()
    for i in range(n):
        if SPIN:
            spin.send(SPIN)
        else:
            noop.send(i)
    seconds = time.perf_counter() - start
    # Confirms off: a process that exits with its connection open can lose the tail of what it
    # sent (a socket closed with unread input, a frame from the broker, is reset, and its
    # unsent output dropped). Seen: 84 of 20,000 tasks never reached a drain's queue.
    broker.close()
    return seconds


async def taskiq(n: int, gather: bool) -> float:
    from .taskiq_app import broker, noop

    await broker.startup()
    try:
        if WARM:
            await noop.kiq(-1)
        start = time.perf_counter()
        if gather:
            await asyncio.gather(*(noop.kiq(i) for i in range(n)))
        else:
            for i in range(n):
                await noop.kiq(i)
        return time.perf_counter() - start
    finally:
        await broker.shutdown()


def main() -> None:
    system, n = sys.argv[1], int(sys.argv[2])
    if system == "celery":
        seconds = celery(n)
    elif system == "dramatiq":
        seconds = dramatiq(n)
    else:
        seconds = asyncio.run(taskiq(n, "gather" in sys.argv[3:]))
    print(f"SECONDS {seconds}")


if __name__ == "__main__":
    main()
