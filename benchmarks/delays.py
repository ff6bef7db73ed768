"""Delays at volume: N tasks sent at once with a countdown, how late they start.

N tasks are sent at once (a gather of ``delay()``) with one countdown, or (``--spread LO HI``)
with countdowns drawn uniformly from a range. One in-process worker at ``--concurrency 200``
runs a no-op that records when it starts. Reported:

- send time: from the first ``delay()`` to the last broker confirm;
- lateness = start - due time, where the due time is taken *before* the send (so the send time
  is part of the lateness, as a user sees it): p50 / p99 / max, and how many started early
  (must be 0);
- broker CPU per delayed task: utime + stime of RabbitMQ's ``beam.smp`` from /proc, from before
  the first send to the last start, divided by N (the broker is shared: anything else it served
  meanwhile is in the figure);
- hops per message: TTL queues waited in (each one a dead-letter republish inside the broker)
  and exchanges passed, from ``taskq.topology.delay_path``; mean and max over the batch.

    python -m benchmarks.delays                          # 3,000 tasks, 5 s countdown
    python -m benchmarks.delays --tasks 20000 --countdown 10
    python -m benchmarks.delays --tasks 5000 --spread 1 60
    python -m benchmarks.delays --tasks 50 --countdown 0.5 --json out.json   # the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from taskq import App, topology
from taskq.cli.common import run_loop

from . import cpu
from .delay_accuracy import percentile, with_worker

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
POLL = 0.02


def countdowns(tasks: int, countdown: float, spread: Sequence[float] | None) -> list[float]:
    """The countdown of every task: all ``countdown``, or uniform over ``spread`` (seeded)."""
    if not spread:
        return [countdown] * tasks
    draw = random.Random(25)
    low, high = spread
    return [draw.uniform(low, high) for _ in range(tasks)]


def hops(delays_s: Sequence[float]) -> dict[str, float]:
    """Mean and max TTL queues and exchanges a delayed message passes through."""
    paths = [topology.delay_path(round(d * 1000)) for d in delays_s]
    queues = [len(p.queues) for p in paths]
    exchanges = [p.exchanges for p in paths]
    return {
        "queue_hops_mean": round(sum(queues) / len(queues), 2),
        "queue_hops_max": max(queues),
        "exchange_hops_mean": round(sum(exchanges) / len(exchanges), 2),
        "exchange_hops_max": max(exchanges),
    }


def lateness(due: Sequence[float], started: Sequence[float]) -> dict[str, Any]:
    """p50 / p99 / max lateness in ms, and how many started before their due time."""
    late = sorted((s - d) * 1000 for s, d in zip(started, due, strict=True))
    return {
        "late_p50_ms": round(percentile(late, 50), 1),
        "late_p99_ms": round(percentile(late, 99), 1),
        "late_max_ms": round(late[-1], 1),
        "early": sum(1 for v in late if v < 0),
    }


def make_app(prefix: str, starts: dict[int, float], quorum: bool = False) -> App:
    """The App under test: a no-op task that records when task ``i`` started."""
    kind = "quorum" if quorum else "classic"
    app = App("bench-delays", broker=BROKER, prefix=prefix, queue_type=kind)

    @app.task(ignore_result=True)
    async def noop(i: int) -> None:
        starts[i] = time.time()

    return app


async def measure(app: App, delays_s: Sequence[float], starts: dict[int, float]) -> dict[str, Any]:
    """Send every task at once, wait for all to start; the figures."""
    noop = app.tasks["noop"]
    broker = cpu.broker_pids()
    before = cpu.ticks(broker)
    t0 = time.time()
    due = [t0 + d for d in delays_s]
    await asyncio.gather(*(noop.options(countdown=d).delay(i) for i, d in enumerate(delays_s)))
    sent = time.time() - t0
    deadline = max(due) + 120 + len(delays_s) / 100
    while len(starts) < len(delays_s):
        if time.time() > deadline:
            raise TimeoutError(f"{len(starts)}/{len(delays_s)} tasks started by the deadline")
        await asyncio.sleep(POLL)
    cpu_us = (cpu.ticks(broker) - before) * cpu.TICK_US if broker else None
    started = [starts[i] for i in range(len(delays_s))]
    return {
        "send_s": round(sent, 3),
        **lateness(due, started),
        "broker_cpu_us_per_task": round(cpu_us / len(delays_s), 1) if cpu_us is not None else None,
        **hops(delays_s),
    }


async def run(delays_s: Sequence[float], concurrency: int, quorum: bool) -> dict[str, Any]:
    """Start a worker, measure, stop, clean up."""
    starts: dict[int, float] = {}
    app = make_app(f"bench-delays-{uuid.uuid4().hex[:8]}", starts, quorum)
    return await with_worker(app, concurrency, lambda: measure(app, delays_s, starts), delays_s)


def load() -> str:
    """The 1-minute load average and the cores: the machine is shared."""
    return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.delays")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks sent at once (3000)")
    parser.add_argument("--countdown", type=float, default=5.0, help="seconds (5)")
    parser.add_argument(
        "--spread", type=float, nargs=2, metavar=("LO", "HI"),
        help="countdowns uniform over LO..HI seconds instead of one countdown",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=200, help="worker concurrency (200)")
    parser.add_argument(
        "--digit-bits", type=int, choices=(1, 2, 3, 4),
        help="compare delay schemes: base 2**BITS (1: the binary levels; default: taskq's)",
    )  # fmt: skip
    parser.add_argument("--quorum", action="store_true", help="quorum work queues and levels")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.digit_bits:  # a comparison: every declaration and send of this process uses it
        topology.DELAY = topology.DelayScheme(args.digit_bits)
    delays_s = countdowns(args.tasks, args.countdown, args.spread)
    load_before = load()
    result = run_loop(run(delays_s, args.concurrency, args.quorum))
    report = {
        "benchmark": "delays",
        "tasks": args.tasks,
        "countdown_s": None if args.spread else args.countdown,
        "spread_s": args.spread,
        "concurrency": args.concurrency,
        "queue_type": "quorum" if args.quorum else "classic",
        "scheme": topology.DELAY.describe(),
        "load_before": load_before,
        "load_after": load(),
        **result,
    }
    for key, value in report.items():
        print(f"{key:>24}: {value}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
