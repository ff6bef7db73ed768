"""Global limits (issue 23): how exactly taskq's fleet-wide rate and concurrency limits hold,
next to Celery's per-worker ``rate_limit``, in one run on the same broker.

    python -m benchmarks.limits [--tasks 3000] [--rate 50/s] [--workers 4] [--seconds 60]
        [--keyed 600] [--keys 4] [--per-key 3] [--scenarios rate,rate-kill,concurrency,celery]
        [--json PATH]

- ``rate``: ``--tasks`` tasks of one task limited to ``--rate`` are queued, then ``--workers``
  ``taskq-worker`` processes start. The start times of the tasks give the start rate over the
  first ``--seconds`` seconds (from the first start; the whole run if it is shorter) and the
  most starts in any 1-second window (sliding, and aligned on whole seconds from the first).
- ``rate-kill``: the same, with one worker SIGKILLed halfway through ``--seconds``.
- ``concurrency``: ``--keyed`` tasks over ``--keys`` keys, ``--per-key`` at once per key,
  each running ``--hold`` seconds: the most runs of one key seen at once (from start and end
  times taken inside the task, so within the slot).
- ``celery``: ``--workers`` Celery workers (``--celery-pool``: prefork, one process each) with
  ``rate_limit=--rate`` on the same task: Celery's limit is per worker.

Each run uses its own prefix (and Celery queue) and deletes them; the 1-minute load average
before and after is in the report (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from taskq import App
from taskq.limits import RateLimit
from taskq.testing.isolation import delete_topology

from .bench_apps import stamps
from .scenarios_peers import celery_command
from .scenarios_taskq import worker_command

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
APP = "benchmarks.bench_apps.limits_app:app"
SCENARIOS = ("rate", "rate-kill", "concurrency", "celery")
REPO = Path(__file__).resolve().parent.parent


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load() -> str:
    """The 1-minute load average and the cores: the machine is shared."""
    return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


# -- figures (pure) -----------------------------------------------------------------------------


def rate_figures(starts: list[float], limit: RateLimit, seconds: float) -> dict[str, Any]:
    """Start rate over the first ``seconds`` from the first start (or over the whole run if it
    ended sooner), and the most starts in 1-second windows, sliding and aligned."""
    starts = sorted(starts)
    if not starts:
        return {"starts": 0}
    first = starts[0]
    within = [t for t in starts if t < first + seconds]
    ended = len(within) == len(starts) and len(starts) > 1
    span = max(starts[-1] - first, 1e-9) if ended else seconds
    # Over the whole run, n starts span n-1 intervals of the rate; over a fixed window, n.
    rate = (len(within) - 1) / span if ended else len(within) / span
    sliding, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - 1.0 + 1e-9:  # a window is half-open: (t - 1 s, t]
            j += 1
        sliding = max(sliding, i - j + 1)
    aligned: dict[int, int] = {}
    for t in starts:
        second = int(t - first)
        aligned[second] = aligned.get(second, 0) + 1
    per_second = limit.count / limit.per
    return {
        "starts": len(starts),
        "measured_s": round(span, 3),
        "rate_per_s": round(rate, 2),
        "rate_error_pct": round((rate / per_second - 1) * 100, 2),
        "max_sliding_1s": sliding,
        "max_aligned_1s": max(aligned.values()),
        "max_window_over_pct": round((sliding / per_second - 1) * 100, 1),
    }


def overlap(events: list[tuple[str, str, float]]) -> dict[str, int]:
    """The most runs of each key at once, from ('s'|'e', key, time) events (an end at the
    same time as a start counts first)."""
    most: dict[str, int] = {}
    now: dict[str, int] = {}
    for kind, key, _ in sorted(events, key=lambda e: (e[2], e[0] != "e")):
        now[key] = now.get(key, 0) + (1 if kind == "s" else -1)
        most[key] = max(most.get(key, 0), now[key])
    return most


# -- running ------------------------------------------------------------------------------------


@contextlib.contextmanager
def processes(
    commands: list[list[str]], env: dict[str, str], logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``commands``; on exit stop those still running (SIGTERM, then SIGKILL)."""
    started = []
    try:
        for i, command in enumerate(commands):
            out = (logs / f"worker-{i}.log").open("wb")
            started.append(
                subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
            )
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def wait_for(
    directory: str, count: int, deadline: float, kind: str = "s"
) -> list[tuple[str, str, float]]:
    """Poll the stamps until ``count`` events of ``kind`` were written or ``deadline``."""
    while True:
        events = stamps.read(directory)
        if sum(1 for e in events if e[0] == kind) >= count or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.2)


async def run_taskq(args: argparse.Namespace, scenario: str) -> dict[str, Any]:
    prefix = f"bl{uuid.uuid4().hex[:10]}"
    limit = RateLimit.parse(args.rate)
    keyed = scenario == "concurrency"
    count = args.keyed if keyed else args.tasks
    client = App("bench-limits-client", broker=BROKER, prefix=prefix)
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER,
               "BENCH_STAMPS": directory, "BENCH_RATE": args.rate,
               "BENCH_CONCURRENCY": str(args.per_key), "BENCH_HOLD": str(args.hold),
               "PYTHONPATH": str(REPO)}  # fmt: skip
        try:
            async with client:
                if keyed:
                    calls = [("keyed", (f"k{i % args.keys}", i)) for i in range(count)]
                else:
                    calls = [("metered", (i,)) for i in range(count)]
                await client.send_many(calls)
                log(f"{scenario}: {count} tasks queued; starting {args.workers} workers")
                command = worker_command(args.worker_concurrency, app=APP)
                with processes([command] * args.workers, env, Path(directory).parent) as workers:
                    killed = None
                    if scenario == "rate-kill":
                        await wait_for(directory, 1, time.monotonic() + 60)
                        await asyncio.sleep(args.seconds / 2)
                        workers[0].send_signal(signal.SIGKILL)
                        killed = time.time()
                        log(f"{scenario}: SIGKILLed worker pid {workers[0].pid}")
                    expected = count * args.hold if keyed else count * limit.per / limit.count
                    events = await wait_for(directory, count, time.monotonic() + expected * 2 + 60)
                await client.transport.delete_queue(limit.queue(client.names, "metered"))
        finally:
            await delete_topology(client.settings, ["default"])
    starts = [t for kind, _, t in events if kind == "s"]
    figures: dict[str, Any] = {"scenario": scenario, "system": "taskq", "tasks": count,
                               "workers": args.workers}  # fmt: skip
    if keyed:
        most = overlap(events)
        figures.update(keys=args.keys, per_key=args.per_key, hold_s=args.hold, starts=len(starts),
                       max_overlap=max(most.values(), default=0), overlap_by_key=most,
                       seconds=round(max(starts) - min(starts), 2) if starts else None)  # fmt: skip
    else:
        figures.update(limit=args.rate, **rate_figures(starts, limit, args.seconds))
        if killed is not None:
            figures["killed_at_s"] = round(killed - min(starts), 2)
    return figures


async def run_celery(args: argparse.Namespace) -> dict[str, Any]:
    queue = f"bench.limits.{uuid.uuid4().hex[:8]}"
    limit = RateLimit.parse(args.rate)
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "BENCH_QUEUE": queue, "BENCH_BROKER": BROKER,
               "BENCH_STAMPS": directory, "BENCH_RATE": args.rate,
               "PYTHONPATH": str(REPO)}  # fmt: skip
        os.environ.update(BENCH_QUEUE=queue, BENCH_RATE=args.rate)
        from .bench_apps import limits_celery

        limits_celery.app.conf.update(task_default_queue=queue, task_default_exchange=queue,
                                      task_default_routing_key=queue)  # fmt: skip
        for i in range(args.tasks):
            limits_celery.metered.apply_async((i,))
        log(f"celery: {args.tasks} tasks queued; starting {args.workers} workers")
        command = celery_command(queue, *args.celery_pool.split())
        command[command.index("benchmarks.bench_apps.celery_app")] = (
            "benchmarks.bench_apps.limits_celery"
        )
        try:
            with processes([command] * args.workers, env, Path(directory).parent):
                deadline = time.monotonic() + args.tasks * limit.per / limit.count + 60
                events = await wait_for(directory, args.tasks, deadline)
        finally:
            await _delete_celery(queue)
    starts = [t for kind, _, t in events if kind == "s"]
    figures = rate_figures(starts, limit, args.seconds)
    return {"scenario": "celery", "system": "celery", "tasks": args.tasks,
            "workers": args.workers, "limit": f"{args.rate} (per worker)", **figures}  # fmt: skip


async def _delete_celery(queue: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(queue)
    finally:
        await connection.close()


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | system | workers | tasks | limit | measured | figure |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["scenario"] == "concurrency":
            lines.append(
                f"| concurrency | taskq | {r['workers']} | {r['tasks']} | {r['per_key']} per "
                f"key ({r['keys']} keys) | max overlap {r['max_overlap']} | by key "
                f"{r['overlap_by_key']} |"
            )
        else:
            lines.append(
                f"| {r['scenario']} | {r['system']} | {r['workers']} | {r['tasks']} | "
                f"{r['limit']} | "
                f"{r['rate_per_s']}/s over {r['measured_s']} s ({r['rate_error_pct']:+}%) | "
                f"max 1-s window {r['max_sliding_1s']} sliding, {r['max_aligned_1s']} aligned |"
            )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.limits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tasks", type=int, default=3000, help="tasks of the rate scenarios")
    p.add_argument("--rate", default="50/s", help="the rate limit")
    p.add_argument(
        "--seconds", type=float, default=60.0, help="the window the rate is measured over"
    )
    p.add_argument("--workers", type=int, default=4, help="worker processes")
    p.add_argument("--worker-concurrency", type=int, default=16, help="taskq-worker --concurrency")
    p.add_argument("--keyed", type=int, default=600, help="tasks of the concurrency scenario")
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--per-key", type=int, default=3, help="the concurrency limit per key")
    p.add_argument("--hold", type=float, default=0.1, help="seconds a keyed task runs")
    p.add_argument(
        "--celery-pool", default="-c 1", help="Celery worker flags (default: prefork, 1 process)"
    )
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    report: dict[str, Any] = {"load_before": load(), "rows": []}
    for scenario in args.scenarios:
        row = await (run_celery(args) if scenario == "celery" else run_taskq(args, scenario))
        log(json.dumps(row))
        report["rows"].append(row)
    report["load_after"] = load()
    print(table(report["rows"]))
    print(f"load: {report['load_before']} before, {report['load_after']} after")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
