"""Workflows: a chord of no-op members against a plain fan-out, and a long chain.

    python -m benchmarks.workflows [--members 10000] [--steps 1000] [--runs 5]
        [--store redis|postgres] [--peers celery,dramatiq] [--json PATH]

(``python -m benchmarks`` runs it too, as its ``workflows`` scenario.)

One in-process worker (concurrency 64) and a client share one event loop, against the local
RabbitMQ and the chosen store (Redis by default):

- fan-out: send N no-op tasks at once (``map``), then wait for every result: tasks/s from
  the first send to the last result (each run of it alternates with a chord's);
- chord: ``chord([noop.s(i) ...], collect.s())``, sent and awaited: tasks/s from the send to
  the callback's result, and the delay from the last member's end to the callback's start
  (p50 over ``--runs`` runs);
- chain: ``noop.s(0) | step.s() | ...`` of M steps: steps/s.

Then, in the same run, Celery's chord and Dramatiq's group with a completion callback, and
their chains, at the same sizes (benchmarks/workflows_peers.py says how each runs), and the
targets of issue 22 with their measured ratios. Each run uses its own prefix and deletes its
queues and keys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio

from taskq import App, Worker
from taskq.results.postgres_schema import Tables
from taskq.topology import Names, every_name
from taskq.workflow import chain, chord

from . import workflows_peers

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def make_app(prefix: str, results: str, marks: dict[str, float]) -> App:
    """The benchmark's App: a no-op task, a chain step, and a callback that notes when the
    last member ended and when it started."""
    app = App("bench-wf", broker=BROKER, prefix=prefix, results=results)

    @app.task
    async def noop(i: int) -> int:
        marks["last_member_end"] = time.perf_counter()
        return i

    @app.task
    async def step(i: int) -> int:
        return i + 1

    @app.task
    async def collect(values: list[int]) -> int:
        marks["callback_start"] = time.perf_counter()
        return len(values)

    return app


async def fanout(app: App, n: int) -> float:
    """Tasks/s of N sends then N results."""
    noop = app.tasks["noop"]
    began = time.perf_counter()
    handles = await noop.map(range(n))
    for handle in handles:
        await handle.result(timeout=300)
    return n / (time.perf_counter() - began)


async def one_chord(app: App, n: int, marks: dict[str, float]) -> tuple[float, float]:
    """Tasks/s of a chord of N members, and the callback's delay after the last member."""
    noop, collect = app.tasks["noop"], app.tasks["collect"]
    began = time.perf_counter()
    handle = await chord([noop.s(i) for i in range(n)], collect.s()).delay()
    assert await handle.result(timeout=300) == n
    rate = n / (time.perf_counter() - began)
    return rate, marks["callback_start"] - marks["last_member_end"]


async def one_chain(app: App, m: int) -> float:
    """Steps/s of a chain of M steps."""
    noop, step = app.tasks["noop"], app.tasks["step"]
    began = time.perf_counter()
    handle = await chain(noop.s(0), *[step.s() for _ in range(m - 1)]).delay()
    assert await handle.result(timeout=300) == m - 1
    return m / (time.perf_counter() - began)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one benchmark run: taskq's, each peer's and the targets."""
    figures = await measure_taskq(args)
    print(f"taskq workflows: {json.dumps(figures)}", file=sys.stderr, flush=True)
    prefix = f"bwf{uuid.uuid4().hex[:10]}"
    peers = figures["peers"] = {}
    for peer in workflows_peers.PEERS:
        if peer.system in args.peers:
            try:
                peers[peer.system] = await workflows_peers.measure_peer(
                    peer, args.members, args.steps, min(args.runs, args.peer_runs), prefix
                )
            except (RuntimeError, TimeoutError) as exc:  # taskq's figures and the other peer stay
                peers[peer.system] = {"failed": f"{type(exc).__name__}: {str(exc)[:1000]}"}
    figures["targets"] = targets(figures)
    return figures


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    """Issue 22's targets: each with its measured value and whether it is met."""
    out: dict[str, Any] = {
        "chord >= 0.8x fan-out": [figures["chord_vs_fanout"], figures["chord_vs_fanout"] >= 0.8],
        "callback delay p50 <= 50 ms": [
            figures["callback_delay_ms_p50"],
            figures["callback_delay_ms_p50"] <= 50,
        ],
    }
    celery = figures["peers"].get("celery", {})
    if "chord_tasks_per_s" in celery:
        rate = round(figures["chord_tasks_per_s"] / celery["chord_tasks_per_s"], 2)
        delay = round(
            celery["callback_delay_ms_p50"] / max(figures["callback_delay_ms_p50"], 0.01), 2
        )
        out["chord rate >= 5x Celery's"] = [rate, rate >= 5]
        out["callback delay <= 1/5 of Celery's"] = [delay, delay >= 5]
    return out


async def measure_taskq(args: argparse.Namespace) -> dict[str, Any]:
    """taskq's figures: fan-out, chord and chain."""
    prefix = f"bench{uuid.uuid4().hex[:10]}"
    results = REDIS if args.store == "redis" else f"{POSTGRES}?taskq_table={prefix}_results"
    marks: dict[str, float] = {}
    app = make_app(prefix, results, marks)
    worker = Worker(app, concurrency=64)
    try:
        async with app:
            running = asyncio.create_task(worker.run())
            try:
                # Alternated, so that a fan-out and a chord see about the same load (on a shared
                # machine, the load changes between a block of fan-outs and one of chords).
                fan, chords = [], []
                for _ in range(args.runs):
                    fan.append(await fanout(app, args.members))
                    chords.append(await one_chord(app, args.members, marks))
                chains = [await one_chain(app, args.steps) for _ in range(max(1, args.runs // 2))]
            finally:
                worker.stop()
                await running
    finally:
        await cleanup(prefix, args.store)
    fan_rate = statistics.median(fan)
    chord_rate = statistics.median(rate for rate, _ in chords)
    return {
        "store": args.store,
        "members": args.members,
        "steps": args.steps,
        "runs": args.runs,
        "fanout_tasks_per_s": round(fan_rate),
        "chord_tasks_per_s": round(chord_rate),
        "chord_vs_fanout": round(chord_rate / fan_rate, 3),
        "callback_delay_ms_p50": round(1000 * statistics.median(d for _, d in chords), 2),
        "chain_steps_per_s": round(statistics.median(chains)),
    }


async def cleanup(prefix: str, store: str) -> None:
    """Delete the run's queues and exchanges, and its Redis keys or tables."""
    names = Names(prefix)
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queues, exchanges = every_name(names, ["default"])
        for name in queues:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)
    finally:
        await connection.close()
    if store == "redis":
        client = redis.asyncio.from_url(REDIS)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
    else:
        import asyncpg

        connection_pg = await asyncpg.connect(POSTGRES)
        try:
            every = ", ".join(Tables.named(f"{prefix}_results").every_table())
            await connection_pg.execute(f"DROP TABLE IF EXISTS {every}")
        finally:
            await connection_pg.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options (``python -m benchmarks`` passes its own)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.workflows")
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=1_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--store", choices=("redis", "postgres"), default="redis")
    p.add_argument(
        "--peers", default="celery,dramatiq", help="comma-separated peers to measure ('' = none)"
    )
    p.add_argument(
        "--peer-runs", type=int, default=3, help="at most this many chords per peer (slower)"
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.peers = [name for name in args.peers.split(",") if name]
    return args


def markdown(figures: dict[str, Any]) -> str:
    """The figures as a Markdown section of the ``python -m benchmarks`` report."""
    if not figures:
        return ""
    rows = [("taskq", figures)] + [
        (name, peer) for name, peer in figures["peers"].items() if "chord_tasks_per_s" in peer
    ]
    lines = [
        f"## Workflows (issue 22): a chord of {figures['members']:,} no-op members, "
        f"a chain of {figures['steps']:,} steps",
        "",
        f"taskq's fan-out of the same tasks: {figures['fanout_tasks_per_s']:,} tasks/s.",
        "",
        "| system | chord tasks/s | callback delay p50 (ms) | chain steps/s |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {row['chord_tasks_per_s']:,} | {row['callback_delay_ms_p50']} | "
            f"{row['chain_steps_per_s'] or 'failed: ' + str(row.get('chain_failed'))} |"
            for name, row in rows
        ),
        "",
        "| target | measured | met |",
        "|---|---:|---|",
        *(
            f"| {name} | {value} | {'met' if met else 'NOT met'} |"
            for name, (value, met) in figures["targets"].items()
        ),
    ]
    skipped = [
        f"{name}: {peer.get('skipped') or peer.get('failed')}"
        for name, peer in figures["peers"].items()
        if "chord_tasks_per_s" not in peer
    ]
    return "\n".join([*lines, *(["", *skipped] if skipped else [])]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print its figures (and write them as JSON with --json)."""
    args = parse(argv)
    figures = asyncio.run(measure(args))
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
