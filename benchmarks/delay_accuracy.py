"""Delay accuracy: how late a delayed task arrives (hold queues, and the levels for the far part).

For each requested delay, N tasks are sent at once with ``countdown=delay`` to an in-process
worker; each task returns ``time.time()`` on arrival. Lateness = arrival - send time - delay
(milliseconds; it includes the confirmed publish, the hops through the level queues and the
delivery to the worker). Negative lateness would mean a task ran early. The time ``delay()``
took (the publish, until the broker's confirm) is reported next to it: on a busy broker it is
most of the lateness, since the levels' TTL clock starts when the message is enqueued.

    python -m benchmarks.delay_accuracy                      # 0.1 .. 60 s, ~70 s
    python -m benchmarks.delay_accuracy --quick              # 0.1 .. 2 s
    python -m benchmarks.delay_accuracy --delays 0.25 3 --per-delay 50 --json out.json
    python -m benchmarks.delay_accuracy --delays 0.25 0.5 1 2 6 --per-delay 5 --behind 3600

``--behind S`` first sends one task with a countdown of S seconds (a long delay must never
hold back the short ones measured after it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from taskq import App, Worker
from taskq.cli.common import run_loop
from taskq.testing.isolation import delete_topology
from taskq.testing.worker import running
from taskq.topology import DELAY_LEVELS, DELAY_UNIT_SECONDS, MAX_DELAY_SECONDS

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
T = TypeVar("T")
FULL = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
QUICK = (0.1, 0.5, 1.0, 2.0)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(delay: float, samples: list[tuple[float, float]]) -> dict[str, Any]:
    """min/p50/p99/max of one delay's lateness, and p50/max of its publish time, in ms."""
    values = sorted(late for late, _ in samples)
    publish = sorted(pub for _, pub in samples)
    return {
        "delay_s": delay,
        "n": len(values),
        "min_ms": round(values[0], 2),
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(values[-1], 2),
        "early": sum(1 for v in values if v < 0),
        "publish_p50_ms": round(percentile(publish, 50), 2),
        "publish_max_ms": round(publish[-1], 2),
    }


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """An aligned table of the summaries."""
    header = ("delay", "n", "min ms", "p50 ms", "p99 ms", "max ms", "early", "pub p50", "pub max")
    lines = [
        (
            f"{row['delay_s']:g} s",
            str(row["n"]),
            f"{row['min_ms']:.1f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['max_ms']:.1f}",
            str(row["early"]),
            f"{row['publish_p50_ms']:.1f}",
            f"{row['publish_max_ms']:.1f}",
        )
        for row in rows
    ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True))
        for r in [header, *lines]
    )


def make_app(prefix: str, concurrency: int) -> App:
    """The App under test: one task that reports its arrival time."""
    app = App("bench-delay", broker=BROKER, prefix=prefix, concurrency=concurrency)

    @app.task
    async def arrive(sent: float) -> float:
        return time.time()

    return app


async def measure(
    app: App, delays: Sequence[float], per_delay: int, behind: float | None = None
) -> list[dict[str, Any]]:
    """Send ``per_delay`` tasks for every delay at once (after one of ``behind`` seconds);
    return one summary per delay."""
    arrive = app.tasks["arrive"]
    if behind:
        await arrive.options(countdown=behind, ignore_result=True).delay(time.time())

    async def one(delay: float) -> tuple[float, float]:
        sent = time.time()
        handle = await arrive.options(countdown=delay).delay(sent)
        confirmed = time.time()
        arrived: float = await handle.result(timeout=delay + 60)
        return (arrived - sent - delay) * 1000, (confirmed - sent) * 1000

    batches = [asyncio.gather(*(one(d) for _ in range(per_delay))) for d in delays]
    results = await asyncio.gather(*batches)
    return [summarise(d, list(r)) for d, r in zip(delays, results, strict=True)]


async def run(
    delays: Sequence[float], per_delay: int, concurrency: int, behind: float | None = None
) -> list[dict[str, Any]]:
    """Start a worker, measure, stop, clean up."""
    app = make_app(f"bench-delay-{uuid.uuid4().hex[:8]}", concurrency)
    return await with_worker(
        app, concurrency, lambda: measure(app, delays, per_delay, behind), delays
    )


async def with_worker(
    app: App, concurrency: int, measure: Callable[[], Awaitable[T]], delays: Sequence[float] = ()
) -> T:
    """``measure()`` with ``app`` open and an in-process worker running, the paths of
    ``delays`` (seconds) declared; then the prefix's topology is deleted."""
    worker = Worker(app, concurrency=concurrency, shutdown_timeout=5)
    try:
        async with app, running(worker, ready_timeout=30):
            # Declare up front: the first delayed send of a process declares the delay
            # queues of its path, which is not what this measures.
            await app.transport.declare_work_queue("default")
            for delay_ms in sorted({int(delay * 1000) for delay in delays}):
                if delay_ms > 0:
                    await app.transport.declare_delay_path(delay_ms)
            return await measure()
    finally:
        await delete_topology(app.settings, ["default"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.delay_accuracy")
    parser.add_argument("--delays", type=float, nargs="+", help=f"seconds (default {FULL})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK}")
    parser.add_argument("--per-delay", type=int, default=20, help="tasks per delay (20)")
    parser.add_argument("--concurrency", type=int, default=64, help="worker concurrency (64)")
    parser.add_argument(
        "--behind", type=float, metavar="S", help="first send one task S seconds away"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    delays = args.delays or (QUICK if args.quick else FULL)
    started = time.time()
    rows = run_loop(run(delays, args.per_delay, args.concurrency, args.behind))
    print(format_table(rows))
    if args.json:
        report = {
            "benchmark": "delay_accuracy",
            "lateness": "arrival - send time - requested delay, ms",
            "publish": "time delay() took, until the broker's confirm, ms",
            "unit_s": DELAY_UNIT_SECONDS,
            "levels": DELAY_LEVELS,
            "max_delay_s": MAX_DELAY_SECONDS,
            "per_delay": args.per_delay,
            "behind_s": args.behind,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "started_at": started,
            "seconds": round(time.time() - started, 1),
            "results": rows,
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
