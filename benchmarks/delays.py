"""Delays at volume: N tasks sent at once with a countdown, how late they start.

N tasks are sent at once (a gather of ``delay()``) with one countdown, or (``--spread LO HI``)
with countdowns drawn uniformly from a range. One in-process worker at ``--concurrency 200``
runs a no-op that records when it starts. Reported:

- send time: from the first ``delay()`` to the last broker confirm;
- lateness = start - due time, where the due time is taken *before* the send (so the send time
  is part of the lateness, as a user sees it): p50 / p99 / max, and how many started early
  (must be 0); ``own_late_*``: the same against each task's own due time, the one its message
  carries (``x-taskq-due``: the sender's clock when ``delay()`` was called, plus the
  countdown, rounded up to the millisecond): what a task's own delay comes to, without the
  20,000 calls of the gather before it;
- broker CPU per delayed task: utime + stime of RabbitMQ's ``beam.smp`` from /proc, from before
  the first send to the last start, divided by N (the broker is shared: anything else it served
  meanwhile is in the figure);
- memory: the broker's resident memory before and at its peak (sampled every 20 ms until the
  last start), and this process's peak (client and worker: what the worker holds);
- hops per message: TTL queues waited in (each one a dead-letter republish inside the broker)
  and exchanges passed, from ``taskq.topology.delay_path`` of the part of each delay spent in
  the levels (``taskq.delays.levels_delay``; the rest waits in a worker); mean and max.
  ``--no-hold`` measures the path before hold queues (the whole delay in the levels).

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
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from taskq import App, current, delays, topology
from taskq.cli.common import run_loop
from taskq.transport.shared import SharedMethods

from . import cpu
from .bench_apps import stamps
from .bench_apps.delays_app import EtaOfEach
from .delay_accuracy import percentile, with_worker
from .harness import taskq_worker

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
SEND_MANY = False
"""Send with one ``App.send_many`` call (``--send-many``) instead of a gather of delay()."""
POLL = 0.02


def countdowns(tasks: int, countdown: float, spread: Sequence[float] | None) -> list[float]:
    """The countdown of every task: all ``countdown``, or uniform over ``spread`` (seeded)."""
    if not spread:
        return [countdown] * tasks
    draw = random.Random(25)
    low, high = spread
    return [draw.uniform(low, high) for _ in range(tasks)]


def hops(delays_s: Sequence[float], hold: bool) -> dict[str, float]:
    """Mean and max TTL queues and exchanges a delayed message passes through: with ``hold``
    (taskq's path) only the levels' part of each delay, then the hold queue (not counted)."""
    levels = [round(d * 1000) for d in delays_s]
    if hold:
        levels = [delays.levels_delay(ms) for ms in levels]
    paths = [topology.delay_path(ms) for ms in levels]
    if hold:  # straight to the hold queue: the default exchange, no wait
        direct = topology.DelayPath([], 1)
        paths = [p if ms else direct for p, ms in zip(paths, levels, strict=True)]
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


def make_app(
    prefix: str, starts: dict[int, float], own_due: dict[int, float], quorum: bool = False
) -> App:
    """The App under test: a no-op task that records when task ``i`` started, and the due
    time its message carried (the sender's clock when it built it, plus the countdown)."""
    kind = "quorum" if quorum else "classic"
    app = App("bench-delays", broker=BROKER, prefix=prefix, queue_type=kind)

    dues: dict[str, float] = {}  # task ID -> its ETA
    app.add_hook(EtaOfEach(dues))

    @app.task(ignore_result=True)
    async def noop(i: int) -> None:
        starts[i] = time.time()
        due = dues.pop(current().task_id, None)
        if due is not None:
            own_due[i] = due

    return app


async def measure(
    app: App,
    delays_s: Sequence[float],
    starts: dict[int, float],
    own_due: dict[int, float],
    worker_pid: int | None = None,
    read_stamps: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Send every task at once, wait for all to start; the figures. With ``worker_pid`` the
    worker is that process, and ``read_stamps`` fills ``starts`` and ``own_due`` from it."""
    noop = app.tasks["noop"]
    broker = cpu.broker_pids()
    before = cpu.ticks(broker)
    rss_before = cpu.rss_mib(broker)
    t0 = time.time()
    due = [t0 + d for d in delays_s]
    if SEND_MANY:
        await app.send_many([(noop.options(countdown=d), (i,)) for i, d in enumerate(delays_s)])
    else:
        await asyncio.gather(*(noop.options(countdown=d).delay(i) for i, d in enumerate(delays_s)))
    sent = time.time() - t0
    deadline = max(due) + 120 + len(delays_s) / 100
    broker_rss = worker_rss = 0.0
    client_rss = 0.0
    while len(starts) < len(delays_s):
        if time.time() > deadline:
            raise TimeoutError(f"{len(starts)}/{len(delays_s)} tasks started by the deadline")
        await asyncio.sleep(POLL if read_stamps is None else 0.5)
        if read_stamps is not None:
            read_stamps()
        broker_rss = max(broker_rss, cpu.rss_mib(broker))
        worker_rss = max(worker_rss, cpu.rss_mib([worker_pid or os.getpid()]))
        client_rss = max(client_rss, cpu.rss_mib([os.getpid()]))
    cpu_us = (cpu.ticks(broker) - before) * cpu.TICK_US if broker else None
    started = [starts[i] for i in range(len(delays_s))]
    own = [i for i in range(len(delays_s)) if i in own_due]
    own_late = lateness([own_due[i] for i in own], [starts[i] for i in own]) if own else {}
    return {
        "send_s": round(sent, 3),
        **lateness(due, started),
        # Against each message's own due time: what the worker adds, without the send's.
        **{f"own_{key}": value for key, value in own_late.items()},
        "broker_cpu_us_per_task": round(cpu_us / len(delays_s), 1) if cpu_us is not None else None,
        "broker_rss_before_mib": rss_before,
        "broker_rss_peak_mib": broker_rss,
        "worker_rss_peak_mib": worker_rss,
        "client_rss_peak_mib": client_rss,
        **hops(delays_s, SharedMethods.holds_delays),
    }


async def run(delays_s: Sequence[float], concurrency: int, quorum: bool) -> dict[str, Any]:
    """Start a worker, measure, stop, clean up."""
    starts: dict[int, float] = {}
    own_due: dict[int, float] = {}
    app = make_app(f"bench-delays-{uuid.uuid4().hex[:8]}", starts, own_due, quorum)
    return await with_worker(
        app, concurrency, lambda: measure(app, delays_s, starts, own_due), delays_s
    )


async def run_worker_process(
    delays_s: Sequence[float], concurrency: int, quorum: bool, processes: int = 1
) -> dict[str, Any]:
    """As :func:`run`, with the worker a ``taskq-worker`` process of its own (the client's
    sends then never share its event loop), of ``processes`` worker processes."""
    prefix = f"bench-delays-{uuid.uuid4().hex[:8]}"
    kind = "quorum" if quorum else "classic"
    app = App("bench-delays", broker=BROKER, prefix=prefix, queue_type=kind)
    app.task(ignore_result=True, name="noop")(_never_run)
    starts: dict[int, float] = {}
    own_due: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-delays-") as directory:
        tail = stamps.Tail(directory)

        def read_stamps() -> None:
            for kind_, key, at in tail.read():
                if kind_ == "s":  # "i" or "i:due"
                    i, _, due = key.partition(":")
                    starts[int(i)] = at
                    if due:
                        own_due[int(i)] = float(due)

        target = "benchmarks.bench_apps.delays_app:app"
        async with (
            taskq_worker(
                target, app, BROKER, directory, concurrency=concurrency, processes=processes
            ) as workers,
            app,
        ):
            await app.transport.declare_work_queue("default")
            return await measure(app, delays_s, starts, own_due, workers.pids[0], read_stamps)


async def _never_run(i: int) -> None:
    """The client's view of the worker's ``noop`` (only its signature is used here)."""


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
    parser.add_argument(
        "--no-hold", action="store_true",
        help="compare with the path before hold queues: the whole delay in the levels",
    )  # fmt: skip
    parser.add_argument("--quorum", action="store_true", help="quorum work queues and levels")
    add_common_options(parser, "send")
    return parser.parse_args(argv)


def add_common_options(parser: argparse.ArgumentParser, sent: str) -> None:
    """The options this benchmark shares with retry_storm: the worker's processes, how
    ``sent`` is sent (a gather or send_many), and --json."""
    parser.add_argument(
        "--worker-process", action="store_true",
        help="run the worker as a taskq-worker process (default: in this process)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1,
        help="with --worker-process: its worker processes (1)",
    )  # fmt: skip
    parser.add_argument(
        "--send-many", action="store_true",
        help=f"{sent} with one App.send_many call instead of a gather of delay() calls",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON here")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.digit_bits:  # a comparison: every declaration and send of this process uses it
        topology.DELAY = topology.DelayScheme(args.digit_bits)
    if args.no_hold or args.digit_bits:  # the levels alone, as before hold queues
        SharedMethods.holds_delays = False
    global SEND_MANY
    SEND_MANY = args.send_many
    delays_s = countdowns(args.tasks, args.countdown, args.spread)
    load_before = load()
    worker = "in-process"
    if args.worker_process:
        worker = f"taskq-worker, {args.processes} process(es)"
        work = run_worker_process(delays_s, args.concurrency, args.quorum, args.processes)
    else:
        work = run(delays_s, args.concurrency, args.quorum)
    result = run_loop(work)
    report = {
        "benchmark": "delays",
        "tasks": args.tasks,
        "countdown_s": None if args.spread else args.countdown,
        "spread_s": args.spread,
        "concurrency": args.concurrency,
        "queue_type": "quorum" if args.quorum else "classic",
        "worker": worker,
        "send": "send_many" if SEND_MANY else "gather",
        "scheme": topology.DELAY.describe(),
        "hold_queues": SharedMethods.holds_delays,
        "load_before": load_before,
        "load_after": load(),
        **result,
    }
    print_report(report, args.json)
    return 0


def print_report(report: dict[str, Any], json_path: str | None) -> None:
    """Print ``report`` a line per figure, and write it as JSON to ``json_path`` if given."""
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:>{width}}: {value}")
    if json_path:
        with open(json_path, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    sys.exit(main())
