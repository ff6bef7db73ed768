"""``python -m benchmarks``: taskq against the raw aio-pika ceiling and its peers, one run.

Example: python -m benchmarks --tasks 20000 --json benchmarks/results/latest.json
         --plot benchmarks/results/latest.png --markdown benchmarks/results/latest.md
         python -m benchmarks --repeat 5   # each figure: the median of 5, with min-max
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import (
    broker,
    issue27,
    log_guard,
    repeat,
    report,
    scenarios_peers,
    scenarios_raw,
    scenarios_taskq,
    workflows,
)
from . import harness as h

SCENARIOS = ["enqueue", "drain", "drain2", "roundtrip", "fanout", "memory", "workflows"]
DEFAULT_SCENARIOS = ["enqueue", "drain", "drain2", "roundtrip", "fanout", "workflows"]
SYSTEMS = ["taskq", "taskq-aio-pika", "raw", "celery", "dramatiq", "taskiq"]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tasks", type=int, default=20_000, help="N tasks per scenario")
    p.add_argument("--roundtrips", type=int, default=1000, help="round trips (default 1000)")
    p.add_argument("--fanout", type=int, default=5000, help="concurrent sends in fan-out")
    p.add_argument(
        "--sequential-cap",
        type=int,
        default=5000,
        help="tasks for the one-at-a-time enqueue variants (slow by nature)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=1000,
        help="taskq-worker --concurrency of the headline rows and raw prefetch of "
        "the ceiling (issue 10: 1000; the peers' tuned 1000 is fixed)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="the second taskq-worker --concurrency and raw prefetch (default 64)",
    )
    p.add_argument(
        "--workflow-members",
        type=int,
        default=10_000,
        help="chord members in the workflows scenario (issue 22: 10000)",
    )
    p.add_argument(
        "--workflow-steps", type=int, default=1000, help="chain steps in the workflows scenario"
    )
    p.add_argument(
        "--workflow-runs", type=int, default=5, help="chords per system (the delay is their p50)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny figures for a smoke run: --tasks 200 --roundtrips 50 "
        "--fanout 200 --sequential-cap 200 --workflow-members 50 --workflow-steps 10 "
        "--workflow-runs 1",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (memory: worker RSS over "
        "--tasks tasks; the issue's check is --tasks 200000 --scenarios memory)",
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every selected system and scenario N times, interleaved (repetition 1 of "
        "every system, then 2, ...); report each figure as the median with min-max, each ratio "
        "taken within a repetition (default 1)",
    )
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--plot", help="write a PNG chart here")
    p.add_argument("--markdown", help="write the table (Markdown) and machine line here")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.quick:
        args.tasks, args.roundtrips, args.fanout, args.sequential_cap = 200, 50, 200, 200
        args.workflow_members, args.workflow_steps, args.workflow_runs = 50, 10, 1
    for name, allowed in (("scenarios", SCENARIOS), ("systems", SYSTEMS)):
        values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        unknown = set(values) - set(allowed)
        if unknown:
            p.error(f"unknown {name}: {', '.join(sorted(unknown))}")
        setattr(args, name, values)
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    opts = h.Options(
        tasks=args.tasks,
        roundtrips=min(args.roundtrips, max(args.tasks, 1)),
        fanout=min(args.fanout, args.tasks),
        sequential_cap=args.sequential_cap,
        scenarios=args.scenarios,
        systems=args.systems,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
    )
    if not await broker.wait_for_broker(timeout=300):
        raise SystemExit(f"no broker at {broker.BROKER}")
    meta = await broker.machine()
    meta["load"] = "load average at start: {:.2f} {:.2f} {:.2f}. ".format(*os.getloadavg())
    meta["counter_cost_ns"] = round(h.counter_cost_ns(), 1)
    meta["completion_signal"] = (
        "each no-op task bumps a per-process shared-memory counter (mmap on /dev/shm) with the "
        "monotonic time of its first and last hit; the harness polls it every 50 ms. Drain "
        "rate = tasks / (last hit - first hit); startup_s = process start to first hit."
    )
    meta["cpu"] = (
        "utime+stime (+cutime+cstime) from /proc/PID/stat of each worker command and every "
        "descendant, and of every beam.smp process (RabbitMQ), sampled once every worker "
        "process has run a task (polled every 5 ms) and again after the last task; divided by "
        "the tasks done in between. The broker is shared: its figure includes other clients."
    )
    meta["log_guard"] = (
        "lines the worker processes wrote to stdout/stderr from the moment every one of them "
        "had run a task to the last task (log_lines); a drain with >= 1 line per "
        f"{log_guard.TASKS_PER_LINE} tasks (and >= {log_guard.MIN_LINES}) is invalid, "
        "reported and left out of every comparison"
    )
    meta["args"] = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "markdown")}
    h.progress(
        f"machine: {meta['cores']} cores, RabbitMQ {meta['rabbitmq']}, Python "
        f"{meta['python']}; {meta['load']}completion counter costs "
        f"{meta['counter_cost_ns']} ns/task"
    )
    notes: list[str] = []
    prefix = h.unique("")
    meta["prefix"] = prefix
    h.progress(
        f"run prefix {prefix}: every queue, exchange and Redis key of this run starts with it"
    )
    started = time.perf_counter()
    systems = [s for s in args.systems if installed(s, notes)]
    try:
        raw, flows = await repetitions(args, opts, systems, prefix, notes)
    finally:
        leftovers = await broker.sweep(prefix)
        if leftovers:
            h.progress(f"deleted {len(leftovers)} leftover queues/exchanges: {leftovers[:5]}")
    if flows:
        meta["workflows"] = flows[0] if args.repeat == 1 else flows
    peers_skipped = {"memory"} & set(args.scenarios)
    if peers_skipped and {"celery", "dramatiq", "taskiq"} & set(args.systems):
        notes.append(f"peers are not measured for: {', '.join(sorted(peers_skipped))}")
    notes += row_notes(raw, args.repeat)
    report.add_fractions(raw)
    results = repeat.aggregate(raw)
    meta["notes"] = notes
    meta["targets"] = report.targets(results)
    meta["issue27"] = issue27.figures(results)
    meta["configurations"] = configurations(results)
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    return {"meta": meta, "results": results}


async def repetitions(
    args: argparse.Namespace, opts: h.Options, systems: list[str], prefix: str, notes: list[str]
) -> tuple[list[h.Result], list[dict[str, Any]]]:
    """Every selected system and scenario, ``--repeat`` times, interleaved so that each
    repetition measures every system under the same conditions: (every row, each marked with
    its repetition; the workflows' figures of each repetition)."""
    rows: list[h.Result] = []
    flows: list[dict[str, Any]] = []
    for n in range(1, args.repeat + 1):
        # its own prefix: what a failed repetition left behind cannot reach the next one
        own = prefix if args.repeat == 1 else f"{prefix}r{n}"
        said: list[str] = []
        if args.repeat > 1:
            h.progress(f"repetition {n} of {args.repeat}")
        for system in systems:
            if set(args.scenarios) - {"workflows"}:
                for row in await run_system(system, opts, own, said):
                    row.repetition = n
                    rows.append(row)
        if "workflows" in args.scenarios:
            flows.append(await run_workflows(args, said))
        notes += [f"repetition {n}: {note}" if args.repeat > 1 else note for note in said]
    return rows, flows


def row_notes(rows: list[h.Result], repeat: int) -> list[str]:
    """A note for each row whose figure is unreliable or left out (with its repetition)."""
    notes = []
    for r in rows:
        where = f"{r.system} {r.scenario} [{r.variant}]"
        where += f" (repetition {r.repetition})" if repeat > 1 else ""
        if r.extra.get("broker_restarted"):
            notes.append(f"{where}: the broker restarted during both tries (figure unreliable)")
        if r.invalid:
            notes.append(f"{where}: {r.invalid} (left out of every comparison)")
        if r.failed and repeat > 1:
            notes.append(f"{where}: failed (left out of its medians): {r.extra.get('error')}")
    return notes


async def run_workflows(args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    """Issue 22's workflows: taskq's chord, fan-out and chain (Redis store) and, in the same
    run, Celery's chord and Dramatiq's group among --systems (benchmarks/workflows.py)."""
    chosen = workflows.parse(
        [
            "--members", str(args.workflow_members), "--steps", str(args.workflow_steps),
            "--runs", str(args.workflow_runs),
            "--peers", ",".join(s for s in args.systems if s in ("celery", "dramatiq")),
        ]
    )  # fmt: skip
    try:
        return await workflows.measure(chosen)
    except Exception as exc:  # the other scenarios' figures stay
        notes.append(f"workflows: failed: {type(exc).__name__}: {str(exc)[:500]}")
        h.progress(notes[-1])
        return {}


async def run_system(system: str, opts: h.Options, prefix: str, notes: list[str]) -> list[h.Result]:
    """Every selected scenario of one system. A failure (a broker restarted by someone else on
    a shared machine, a broken peer) retries the system once, once the broker answers again;
    a second failure is a note and the run goes on with the other systems."""
    for attempt in (1, 2):
        try:
            return await _run_system(system, opts, prefix)
        except Exception as exc:  # one system's failure must not lose the rest of the run
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
            h.progress(f"{system}: failed (attempt {attempt}): {error}")
            if attempt == 2 or not await broker.wait_for_broker(timeout=180):
                notes.append(f"{system}: failed: {error}")
                return []
            notes.append(f"{system}: retried once after: {error}")
    return []


def installed(system: str, notes: list[str]) -> bool:
    """Whether ``system`` can run here (a peer not installed: a note, and skipped)."""
    if system in ("taskq", "taskq-aio-pika", "raw") or scenarios_peers.installed(system):
        return True
    notes.append(f"{system}: not installed (pip install -e '.[bench]'), skipped")
    h.progress(notes[-1])
    return False


async def _run_system(system: str, opts: h.Options, prefix: str) -> list[h.Result]:
    if system == "taskq":
        try:
            return await scenarios_taskq.run(opts, f"{prefix}tq")
        finally:
            await scenarios_taskq.delete_topology(f"{prefix}tq")
    if system == "taskq-aio-pika":
        return await _taskq_over_aio_pika(opts, f"{prefix}tqa")
    if system == "raw":
        return await scenarios_raw.run(opts, prefix)
    return await scenarios_peers.run(system, opts, prefix)


async def _taskq_over_aio_pika(opts: h.Options, prefix: str) -> list[h.Result]:
    """taskq's scenarios with transport="aio-pika" (TASKQ_TRANSPORT reaches the Apps and the
    worker processes they start), so each transport's price shows in the same run."""
    saved = os.environ.get("TASKQ_TRANSPORT")
    os.environ["TASKQ_TRANSPORT"] = "aio-pika"
    try:
        results = await scenarios_taskq.run(opts, prefix)
    finally:
        if saved is None:
            os.environ.pop("TASKQ_TRANSPORT", None)
        else:
            os.environ["TASKQ_TRANSPORT"] = saved
        await scenarios_taskq.delete_topology(prefix)
    return [dataclasses.replace(r, system="taskq-aio-pika") for r in results]


def configurations(results: list[h.Result]) -> dict[str, list[str]]:
    """Each system's exact configurations, as measured (one line per scenario and variant)."""
    out: dict[str, list[str]] = {}
    for r in results:
        line = f"{r.scenario} / {r.variant}: {r.config}"
        if line not in out.setdefault(r.system, []):
            out[r.system].append(line)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        import uvloop

        out = uvloop.run(run(args))
    except ImportError:
        out = asyncio.run(run(args))
    meta, results = out["meta"], out["results"]
    flows = meta.get("workflows", {})
    text = report.document(results, meta, issue27.section(meta["issue27"])) + (
        report.workflows_repeated(flows) if isinstance(flows, list) else workflows.markdown(flows)
    )
    print(f"\n{text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(results, meta), f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        report.plot(results, meta, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
