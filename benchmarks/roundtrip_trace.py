"""``python -m benchmarks.roundtrip_trace``: where one round trip's time goes, hop by hop.

Sends N tasks one at a time (``await (await noop.delay(i)).result()``) to one taskq-worker
process, with timestamps at each hop in both processes (benchmarks/bench_apps/trace_points:
socket reads and writes, publishes, deliveries, confirms, acks; CLOCK_MONOTONIC, shared by the
processes of one machine). For each event of a round trip it prints the median time since the
round trip began, and the median step from the event before: the breakdown in
docs/benchmarks.md.

Example: python -m benchmarks.roundtrip_trace --roundtrips 2000 [--results redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import uvloop

from . import broker, scenarios_taskq
from . import harness as h
from .bench_apps import trace_points
from .bench_apps.taskq_app import make_app

Event = tuple[int, str, str]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.roundtrip_trace", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--roundtrips", type=int, default=2000)
    p.add_argument("--results", default="amqp", help="the App's results (default amqp)")
    p.add_argument("--concurrency", type=int, default=1000)
    p.add_argument("--json", help="write the breakdown as JSON here")
    return p.parse_args(argv)


async def trace(args: argparse.Namespace, prefix: str) -> tuple[list[Event], list[Event]]:
    """Run the round trips under ``prefix``; return the client's and the worker's events."""
    out = Path(tempfile.mkdtemp(prefix="taskq-trace-")) / "worker.json"
    command = [sys.executable, "-m", "benchmarks.bench_apps.traced_worker",
               scenarios_taskq.WORKER_APP, "--concurrency", str(args.concurrency),
               "--log-level", "warning"]  # fmt: skip
    env = {**scenarios_taskq.worker_env(prefix, args.results), "TRACE_OUT": str(out)}
    workers = h.Workers([command], env)
    trace_points.install()
    try:
        async with make_app(prefix=prefix, broker=broker.BROKER, results=args.results) as app:
            noop = app.tasks["noop"]
            for i in range(50):  # worker up and warm
                await (await noop.delay(i)).result(timeout=60)
            trace_points.EVENTS.clear()
            for i in range(args.roundtrips):
                trace_points.mark("start")
                handle = await noop.delay(i)
                trace_points.mark("delay() returned")
                assert await handle.result(timeout=30) == i
                trace_points.mark("result() returned")
            client = list(trace_points.EVENTS)
    finally:
        await workers.stop()
        await scenarios_taskq.delete_topology(prefix)
        if args.results.startswith("redis"):
            await broker.delete_redis_keys(f"{prefix}:")
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    worker = [tuple(e) for e in json.loads(out.read_text())] if out.exists() else []
    return client, worker  # type: ignore[return-value]


def breakdown(client: list[Event], worker: list[Event]) -> list[dict[str, object]]:
    """Median offset of each event (by side, name, connection and occurrence) in a round trip."""
    merged = sorted([(t, "client", e, c) for t, e, c in client]
                    + [(t, "worker", e, c) for t, e, c in worker])  # fmt: skip
    offsets: dict[str, list[float]] = defaultdict(list)
    trip_start = None
    seen: dict[str, int] = {}
    for t, side, event, conn in merged:
        if side == "client" and event == "start":
            trip_start, seen = t, {}
        if trip_start is None:
            continue
        label = f"{side}: {event}" + (f" [{conn}]" if conn else "")
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label += f" #{seen[label]}"
        offsets[label].append((t - trip_start) / 1000)
        if side == "client" and event == "result() returned":
            trip_start = None
    trips = len(offsets.get("client: start", []))
    rows = [
        {"event": label, "p50_us": statistics.median(v), "share": len(v) / max(trips, 1)}
        for label, v in offsets.items()
        if len(v) >= trips * 0.5
    ]
    rows.sort(key=lambda r: r["p50_us"])  # type: ignore[arg-type,return-value]
    previous = 0.0
    for row in rows:
        row["step_us"] = float(row["p50_us"]) - previous  # type: ignore[arg-type]
        previous = float(row["p50_us"])  # type: ignore[arg-type]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    prefix = h.unique("")
    client, worker = uvloop.run(trace(args, prefix))  # as the client of python -m benchmarks
    rows = breakdown(client, worker)
    print(f"{args.roundtrips} round trips, results={args.results}")
    print(f"{'event':<52} {'p50 us':>8} {'step us':>8} {'in':>5}")
    for row in rows:
        print(f"{row['event']:<52} {row['p50_us']:>8.0f} {row['step_us']:>8.0f} "
              f"{row['share']:>5.0%}")  # fmt: skip
    if args.json:
        report = {"prefix": prefix, "roundtrips": args.roundtrips, "results": args.results}
        Path(args.json).write_text(json.dumps({**report, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
