"""Plain ``def`` tasks: taskq's thread and process pools next to Celery prefork and Dramatiq
processes, in one run on the same broker; then how long a process-pool worker takes to stop
with a task stuck in its pool.

    python -m benchmarks.pool [--tasks 5000] [--cpu-tasks 40] [--iterations 5000000]
        [--systems taskq,celery,dramatiq] [--shutdown-repeats 3] [--shutdown-timeout 2]
        [--json benchmarks/results/pool.json] [--markdown benchmarks/results/pool.md]

Two groups of drains, each N tasks queued first, then the workers started (the harness of
``python -m benchmarks``: completion counters, CPU per task, the log guard, a retry when the
broker restarts): a no-op, and a CPU-bound task (``--iterations`` pure-Python additions) run
with 1 and 2 processes. Peers that are not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import broker, pool_report, pool_shutdown, scenarios_peers
from . import harness as h
from .bench_apps.pool_app import make_app
from .scenarios_peers import celery_command, dramatiq_command
from .scenarios_taskq import delete_topology, shown, worker_command, worker_env

POOL_APP = pool_shutdown.POOL_APP
SYSTEMS = ["taskq", "celery", "dramatiq"]
GROUPS = ("no-op", "cpu")
CHUNK = 5000  # tasks per map() of the taskq client
ACKS_LATE = {"BENCH_CELERY_ACKS_LATE": "1"}
CELERY_COMMON = (
    "task_acks_late=True (ack after the task: at-least-once, as taskq and Dramatiq), "
    "ignore_result, gossip/mingle/heartbeat/remote control/events off, -l warning"
)
DRAMATIQ_COMMON = "RabbitmqBroker (pika), max_retries=0, acks after the task (its default)"


@dataclasses.dataclass(frozen=True)
class Options:
    """What one run measures."""

    tasks: int
    cpu_tasks: int
    iterations: int
    systems: list[str]
    shutdown_repeats: int
    shutdown_timeout: float


@dataclasses.dataclass(frozen=True)
class Row:
    """One configuration of one system: ``family`` groups the rows that differ only by their
    process count (the speed-up of 2 over 1)."""

    variant: str
    family: str
    processes: int
    commands: list[list[str]]
    env: dict[str, str]
    config: str


Send = Callable[[int], Awaitable[object]]


async def send_taskq(prefix: str, name: str, n: int, argument: int | None) -> None:
    """Queue ``n`` calls of taskq task ``name`` (no result asked: no reply_to)."""
    async with make_app(prefix=prefix, broker=broker.BROKER) as app:
        task = app.tasks[name].options(ignore_result=True)
        item: Any = () if argument is None else argument
        for start in range(0, n, CHUNK):
            await task.map([item] * min(CHUNK, n - start))


def taskq_rows(group: str, prefix: str) -> list[Row]:
    """taskq-worker with the default thread pool, and with the process pool."""
    env = worker_env(prefix)
    pool = ["--sync-pool", "process", "--sync-workers"]
    if group == "no-op":
        specs = [
            ("threads (8, the default)", "threads", 1, [], {}),
            ("processes: --sync-workers 2", "processes", 2, [*pool, "2"], {}),
        ]
        concurrency = 1000  # the headline drain's (python -m benchmarks)
    else:
        specs = [
            ("threads: 2 (TASKQ_THREADS=2)", "threads", 1, [], {"TASKQ_THREADS": "2"}),
            ("processes: --sync-workers 1", "processes", 1, [*pool, "1"], {}),
            ("processes: --sync-workers 2", "processes", 2, [*pool, "2"], {}),
        ]
        concurrency = 16  # the default
    rows = []
    for variant, family, processes, flags, extra in specs:
        command = worker_command(concurrency, app=POOL_APP) + flags
        config = shown(command, POOL_APP) + "".join(f", {k}={v}" for k, v in extra.items())
        rows.append(Row(variant, f"taskq {family}", processes, [command], {**env, **extra}, config))
    return rows


def celery_rows(group: str, queue: str) -> list[Row]:
    """Celery's prefork pool: for a no-op, a large prefetch; for CPU, 1 and -O fair."""
    if group == "no-op":
        return [
            Row(
                "prefork -c 2, prefetch 500 x 2",
                "celery prefork",
                2,
                [celery_command(queue, "-P", "prefork", "-c", "2")],
                {"BENCH_CELERY_PREFETCH": "500", **ACKS_LATE},
                "celery worker -P prefork -c 2, worker_prefetch_multiplier=500 (prefetch 1000; "
                f"docs: a large multiplier for many short tasks), {CELERY_COMMON}",
            )
        ]
    return [
        Row(
            f"prefork -c {c}, -O fair, prefetch 1",
            "celery prefork",
            c,
            [celery_command(queue, "-P", "prefork", "-c", str(c), "-O", "fair")],
            {"BENCH_CELERY_PREFETCH": "1", **ACKS_LATE},
            f"celery worker -P prefork -c {c} -O fair, worker_prefetch_multiplier=1 (docs: "
            f"for long tasks, multiplier 1 and -O fair), {CELERY_COMMON}",
        )
        for c in (1, 2)
    ]


def dramatiq_rows(group: str, queue: str) -> list[Row]:
    """Dramatiq processes of one thread each."""
    if group == "no-op":
        return [
            Row(
                "--processes 2 --threads 1, prefetch 1000",
                "dramatiq processes",
                2,
                dramatiq_command(2, 1)(queue),
                {"dramatiq_queue_prefetch": "1000"},
                "dramatiq --processes 2 --threads 1, dramatiq_queue_prefetch=1000 (env), "
                + DRAMATIQ_COMMON,
            )
        ]
    return [
        Row(
            f"--processes {p} --threads 1",
            "dramatiq processes",
            p,
            dramatiq_command(p, 1)(queue),
            {},
            f"dramatiq --processes {p} --threads 1, prefetch 2 (its default: 2 x threads), "
            + DRAMATIQ_COMMON,
        )
        for p in (1, 2)
    ]


def plans(system: str, group: str, prefix: str, opts: Options) -> list[tuple[h.Drain, Send]]:
    """What to measure for one system in one group, and how to queue its tasks."""
    spin = group == "cpu"
    if system == "taskq":
        tq = f"{prefix}tq"
        queue = make_app(prefix=tq).names.work_queue("default")
        rows = taskq_rows(group, tq)
        name, argument = ("spin", opts.iterations) if spin else ("noop", None)

        def send(n: int) -> Awaitable[None]:
            return send_taskq(tq, name, n, argument)

    else:
        queue = f"{prefix}{system}{'cpu' if spin else 'noop'}"  # see delete_all
        rows = (celery_rows if system == "celery" else dramatiq_rows)(group, queue)
        peer = scenarios_peers.PEERS[system]
        env = {"BENCH_SPIN": str(opts.iterations)} if spin else {}

        def send(n: int) -> Awaitable[float]:
            return scenarios_peers.send_tasks(peer, queue, n, env, ())

        rows = [dataclasses.replace(r, env={"BENCH_QUEUE": queue, **r.env}) for r in rows]
    hits = 2 if spin else 1  # the CPU task counts its start and its end
    return [
        (
            h.Drain(
                system,
                group,
                r.variant,
                r.config,
                r.commands,
                {"BENCH_BROKER": broker.BROKER, **r.env},
                queue,
                r.processes,
                r.family,
                hits,
            ),
            send,
        )
        for r in rows
    ]


async def delete_all(prefix: str, opts: Options) -> None:
    """Delete every queue and exchange the run declared, by name (a ``broker.sweep`` by prefix
    would wait 5 s for a steady broker and run rabbitmqctl twice)."""
    prefixes = [f"{prefix}tq"] + [f"{prefix}sd{n}" for n in range(opts.shutdown_repeats)]
    for tq in prefixes:
        await delete_topology(tq)
    for system in set(opts.systems) - {"taskq"}:
        peer = scenarios_peers.PEERS[system]
        for group in ("noop", "cpu"):
            queue = f"{prefix}{system}{group}"
            await broker.delete(queues=peer.queues(queue), exchanges=peer.exchanges(queue))


def uptime() -> str:
    """``uptime``'s line (the load averages), or the load averages alone without it."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


async def run(opts: Options) -> dict[str, Any]:
    """Every row, then the shutdown measurement; everything under one unique prefix."""
    if not await broker.wait_for_broker(timeout=300, steady=1.0):
        raise SystemExit(f"no broker at {broker.BROKER}")
    meta = await broker.machine()
    meta["load_start"] = uptime()
    meta["args"] = dataclasses.asdict(opts)
    h.progress(f"machine: {meta['cores']} cores, {meta['load_start']}")
    prefix = h.unique("pool")
    notes: list[str] = []
    systems = []
    for system in opts.systems:
        if system == "taskq" or scenarios_peers.installed(system):
            systems.append(system)
        else:
            notes.append(f"{system}: not installed (pip install -e '.[bench]'), skipped")
    started = time.perf_counter()
    rows: list[h.Result] = []
    try:
        for group in GROUPS:
            count = opts.tasks if group == "no-op" else opts.cpu_tasks
            for system in systems:
                for drain, send in plans(system, group, prefix, opts):
                    rows.append(await h.measure_drain(drain, count, send))
        shutdown = None
        if opts.shutdown_repeats:
            shutdown = await pool_shutdown.measure(
                prefix, opts.shutdown_timeout, opts.shutdown_repeats
            )
    finally:
        await delete_all(prefix, opts)
    meta["load_end"] = uptime()
    meta["duration_s"] = round(time.perf_counter() - started, 1)
    meta["notes"] = notes + [f"{r.system} {r.variant}: {r.invalid}" for r in rows if r.invalid]
    return {"meta": meta, "results": rows, "shutdown": shutdown}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pool", description=__doc__)
    p.add_argument("--tasks", type=int, default=5000, help="no-op tasks per row")
    p.add_argument("--cpu-tasks", type=int, default=40, help="CPU-bound tasks per row")
    p.add_argument("--iterations", type=int, default=5_000_000, help="additions per CPU task")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    p.add_argument("--shutdown-repeats", type=int, default=3, help="0: no shutdown figure")
    p.add_argument("--shutdown-timeout", type=float, default=2.0)
    p.add_argument("--json", help="write every figure as JSON here")
    p.add_argument("--markdown", help="write the report (Markdown) here")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    opts = Options(
        args.tasks,
        args.cpu_tasks,
        args.iterations,
        args.systems,
        args.shutdown_repeats,
        args.shutdown_timeout,
    )
    try:
        import uvloop

        out = uvloop.run(run(opts))
    except ImportError:
        out = asyncio.run(run(opts))
    text = pool_report.document(out["results"], out["shutdown"], out["meta"])
    print(f"\n{text}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                pool_report.to_json(out["results"], out["shutdown"], out["meta"]), f, indent=2
            )
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
