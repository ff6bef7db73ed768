"""``python -m benchmarks``: taskq against the raw aio-pika ceiling and its peers, one run.

Example: python -m benchmarks --tasks 20000 --json benchmarks/results/latest.json
         --plot benchmarks/results/latest.png --markdown benchmarks/results/latest.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import harness as h
from . import scenarios_peers, scenarios_raw, scenarios_taskq

SCENARIOS = ["enqueue", "drain", "drain2", "roundtrip", "fanout", "memory"]
DEFAULT_SCENARIOS = ["enqueue", "drain", "drain2", "roundtrip", "fanout"]
SYSTEMS = ["taskq", "raw", "celery", "dramatiq", "taskiq"]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000, help="N tasks per scenario")
    p.add_argument("--roundtrips", type=int, default=1000, help="round trips (default 1000)")
    p.add_argument("--fanout", type=int, default=5000, help="concurrent sends in fan-out")
    p.add_argument("--sequential-cap", type=int, default=5000,
                   help="tasks for the one-at-a-time enqueue variants (slow by nature)")
    p.add_argument("--concurrency", type=int, default=64,
                   help="taskq-worker --concurrency and raw consumer prefetch")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, of {','.join(SCENARIOS)} (memory: worker RSS over "
                   "--tasks tasks; the issue's check is --tasks 200000 --scenarios memory)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--plot", help="write a PNG chart here")
    p.add_argument("--markdown", help="write the table (Markdown) and machine line here")
    args = p.parse_args(argv)
    for name, allowed in (("scenarios", SCENARIOS), ("systems", SYSTEMS)):
        values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        unknown = set(values) - set(allowed)
        if unknown:
            p.error(f"unknown {name}: {', '.join(sorted(unknown))}")
        setattr(args, name, values)
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    opts = h.Options(tasks=args.tasks, roundtrips=min(args.roundtrips, max(args.tasks, 1)),
                     fanout=min(args.fanout, args.tasks), sequential_cap=args.sequential_cap,
                     scenarios=args.scenarios, systems=args.systems,
                     concurrency=args.concurrency)
    meta = await h.machine()
    meta["counter_cost_ns"] = round(h.counter_cost_ns(), 1)
    meta["completion_signal"] = (
        "each no-op task bumps a per-process shared-memory counter (mmap on /dev/shm) with the "
        "monotonic time of its first and last hit; the harness polls it every 50 ms. Drain "
        "rate = tasks / (last hit - first hit); startup_s = process start to first hit.")
    meta["args"] = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "markdown")}
    h.progress(f"machine: {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, Python "
               f"{meta['python']}; completion counter costs {meta['counter_cost_ns']} ns/task")
    results: list[h.Result] = []
    notes: list[str] = []
    prefix = h.unique("")
    started = time.perf_counter()
    for system in args.systems:
        if system == "taskq":
            try:
                results += await scenarios_taskq.run(opts, f"{prefix}tq")
            finally:
                await delete_taskq_topology(f"{prefix}tq")
        elif system == "raw":
            results += await scenarios_raw.run(opts, prefix)
        elif not scenarios_peers.installed(system):
            notes.append(f"{system}: not installed (pip install -e '.[bench]'), skipped")
            h.progress(notes[-1])
        else:
            try:
                results += await scenarios_peers.run(system, opts, prefix)
            except Exception as exc:  # a broken peer must not lose the rest of the run
                notes.append(f"{system}: failed: {type(exc).__name__}: {str(exc)[:500]}")
                h.progress(notes[-1])
    peers_skipped = {"memory"} & set(args.scenarios)
    if peers_skipped and {"celery", "dramatiq", "taskiq"} & set(args.systems):
        notes.append(f"peers are not measured for: {', '.join(sorted(peers_skipped))}")
    h.add_fractions(results)
    meta["notes"] = notes
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    return {"meta": meta, "results": results}


async def delete_taskq_topology(prefix: str) -> None:
    from taskq.topology import DELAY_LEVELS, Names

    names = Names(prefix)
    await h.delete(
        queues=[names.work_queue("default"), names.dead_queue("default"),
                *(names.delay_level(level) for level in range(DELAY_LEVELS))],
        exchanges=[names.exchange, names.dlx, names.delivery, names.events, names.control,
                   *(names.delay_level(level) for level in range(DELAY_LEVELS))])


def header(meta: dict[str, Any]) -> str:
    return (f"{meta['date']} - {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, Python "
            f"{meta['python']} ({meta['loop']}), {meta['platform']}. 'vs raw' = rate / raw "
            "aio-pika rate, or raw p50 / p50 for latency (1.00 = the ceiling). Completion "
            f"signal: shared-memory counter, {meta['counter_cost_ns']} ns/task.")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        import uvloop

        out = uvloop.run(run(args))
    except ImportError:
        out = asyncio.run(run(args))
    meta, results = out["meta"], out["results"]
    text = h.table(results)
    notes = "".join(f"\nnote: {n}" for n in meta["notes"])
    print(f"\n{header(meta)}\n\n{text}{notes}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(h.to_json(results, meta), f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{header(meta)}\n\n{text}\n{notes}\n")
    if args.plot:
        h.plot(results, meta, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
