"""Drain throughput of one logical queue split into 1, 2 and 4 partitions, on a cluster.

For each partition count k: a client queues N no-op tasks (no reply_to) on the queue
``default`` with ``partitions={"default": k}``, then W ``taskq-worker`` processes start, each
connected to another node of the cluster (worker i to broker URL i mod nodes first, the
others as fail-over), and drain it.
Rate = N / (last task done - first task done), from the shared-memory completion counters of
benchmarks/harness.py; CPU per task of the workers and of every ``beam.smp`` on the machine.
Work queues are quorum queues by default (``--classic`` for classic ones); with quorum
partitions the leaders are asked to spread over the nodes (``x-queue-leader-locator:
balanced``), and ``--ctl`` lists where each partition's leader went.

    TASKQ_CLUSTER_NAME=part TASKQ_CLUSTER_PORT_BASE=7700 bash scripts/cluster.sh up
    python -m benchmarks.partitions --tasks 20000 \\
        --brokers amqp://guest:guest@127.0.0.1:7701/,amqp://guest:guest@127.0.0.1:7702/,\\
amqp://guest:guest@127.0.0.1:7703/ --ctl "bash scripts/cluster.sh ctl 1"

Without ``--brokers`` it runs against ``$BENCH_BROKER`` (one node; the smoke test does this).
The table goes to stdout (``--json FILE`` keeps every figure), progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskq import App
from taskq.testing.isolation import delete_topology
from taskq.topology import routes

from . import cpu
from . import harness as h
from .bench_apps.taskq_app import make_app
from .scenarios_taskq import WORKER_APP, worker_command

DEFAULT_BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = "default"
SEND_CHUNK = 5000


@dataclass
class Row:
    """One drain: k partitions, W workers."""

    partitions: int
    workers: int
    tasks: int
    seconds: float
    tasks_per_s: float
    worker_cpu_us: float | None
    broker_cpu_us: float | None
    leaders: dict[str, str] = field(default_factory=dict)
    left: int | None = None
    node_cpu_us: dict[str, float] = field(default_factory=dict)
    """Broker CPU per task on each node of the cluster (``--nodes``)."""
    runs: list[float] = field(default_factory=list)
    """tasks/s of every run of this count (``--repeat``); the row is the median run."""


def _starting_at(brokers: list[str], i: int) -> str:
    """Every URL, node ``i mod n`` first: worker i connects there, and fails over to the rest."""
    k = i % len(brokers)
    return ",".join(brokers[k:] + brokers[:k])


def _settings(prefix: str, partitions: int, quorum: bool) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "queue_type": "quorum" if quorum else "classic",
        "partitions": {QUEUE: partitions},
    }


def _env(settings: dict[str, Any], broker: str) -> dict[str, str]:
    return {
        "TASKQ_BROKER": broker,
        "TASKQ_PREFIX": settings["prefix"],
        "TASKQ_QUEUE_TYPE": settings["queue_type"],
        "TASKQ_PARTITIONS": json.dumps(settings["partitions"]),
    }


async def _queue(app: App, tasks: int) -> None:
    noop = app.tasks["noop"].options(ignore_result=True)
    for start in range(0, tasks, SEND_CHUNK):
        await noop.map(range(start, min(tasks, start + SEND_CHUNK)))


async def _left(app: App, partitions: int) -> int:
    total = 0
    for route in routes(QUEUE, partitions):
        depth = await app.transport.queue_depth(app.names.work_queue(route))
        total += depth.messages if depth is not None else 0
    return total


def leaders(ctl: str | None, prefix: str) -> dict[str, str]:
    """Queue -> node of its leader, for the work queues of ``prefix``, from ``ctl`` (a
    rabbitmqctl command line for a node of the cluster)."""
    if not ctl:
        return {}
    try:
        out = subprocess.run(
            [*shlex.split(ctl), "-q", "list_queues", "name", "leader"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(f"{prefix}.q.{QUEUE}"):
            found[parts[0][len(prefix) + 3 :]] = parts[1]
    return found


async def drain(partitions: int, tasks: int, brokers: list[str], opts: argparse.Namespace) -> Row:
    """Queue ``tasks``, start the workers, time the drain, clean up."""
    prefix = h.unique("part")
    settings = _settings(prefix, partitions, not opts.classic)
    async with make_app(broker=brokers[0], **settings) as app:
        h.progress(f"k={partitions}: queueing {tasks} tasks")
        await _queue(app, tasks)
        placed = leaders(opts.ctl, prefix)
        nodes = node_pids(opts.nodes.split(",")) if opts.nodes else {}
        command = worker_command(opts.concurrency)
        workers = [
            h.Workers([command], _env(settings, _starting_at(brokers, i)))
            for i in range(opts.workers)
        ]
        try:
            pids = [p for w in workers for p in w.pids]
            deadline = time.monotonic() + 120 + tasks / 100
            # CPU from the moment every worker has run a task: imports and connects stay out
            running = await _until(workers, lambda rs: _started(rs, tasks), deadline)
            counted = sum(r[0] for r in running)
            before, nodes_before = cpu.Sample(pids), _node_ticks(nodes)
            reads = await _until(workers, lambda rs: sum(r[0] for r in rs) >= tasks, deadline)
            after, nodes_after = cpu.Sample(pids), _node_ticks(nodes)
        finally:
            for w in workers:
                await w.stop()
        first = min((r[1] for r in reads if r[1]), default=0)
        last = max(r[2] for r in reads)
        left = await _left(app, partitions)
        await _delete(app, partitions)
    seconds = (last - first) / 1e9
    window = tasks - counted
    cost = cpu.per_task_us(before, after, window)
    per_node = _per_task(nodes_before, nodes_after, window)
    return Row(partitions, opts.workers, tasks, round(seconds, 3),
               round(tasks / seconds, 1) if seconds > 0 else 0.0,
               cost["worker_cpu_us"], cost["broker_cpu_us"], placed, left, per_node)  # fmt: skip


Reads = list[tuple[int, int, int]]


def node_pids(names: list[str]) -> dict[str, int]:
    """The ``beam.smp`` of each RabbitMQ node named (by its RABBITMQ_NODENAME)."""
    wanted = {f"RABBITMQ_NODENAME={name}".encode(): name for name in names}
    found = {}
    for pid in cpu.broker_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry in wanted:
                found[wanted[entry]] = pid
    return found


def _node_ticks(nodes: dict[str, int]) -> dict[str, int]:
    return {name: cpu.ticks([pid]) for name, pid in nodes.items()}


def _per_task(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, float]:
    """CPU microseconds per task of each node (short name) between two samples."""
    if tasks <= 0:
        return {}
    return {
        name.split("@")[0]: round((after[name] - before[name]) * cpu.TICK_US / tasks, 1)
        for name in before
    }


def _started(reads: Reads, tasks: int) -> bool:
    """Every worker has run a task (or half the tasks are done: one worker was quicker)."""
    return all(r[0] for r in reads) or sum(r[0] for r in reads) >= tasks // 2


async def _until(workers: list[h.Workers], done: Callable[[Reads], bool], deadline: float) -> Reads:
    """Poll the workers' counters until ``done(reads)``: (count, first ns, last ns) each."""
    while True:
        for w in workers:
            w.check_alive()
        reads = [w.counters.read() for w in workers]
        if done(reads):
            return reads
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(r[0] for r in reads)} tasks done by the deadline")
        await asyncio.sleep(h.POLL)


async def _delete(app: App, partitions: int) -> None:
    # Everything the run declared: partitions, dead queue, delay levels, exchanges.
    await delete_topology(app.settings, [QUEUE])


def median_row(runs: list[Row]) -> Row:
    """The run with the median rate, with the rates of every run."""
    ordered = sorted(runs, key=lambda r: r.tasks_per_s)
    row = ordered[(len(ordered) - 1) // 2]
    row.runs = [r.tasks_per_s for r in runs]
    return row


def table(rows: list[Row]) -> str:
    """The result table, with the speed-up over one partition."""
    base = next((r.tasks_per_s for r in rows if r.partitions == 1 and r.tasks_per_s), None)
    lines = [
        "| partitions | workers | tasks | seconds | tasks/s (median) | runs | vs k=1 "
        "| worker CPU us/task | broker CPU us/task | by node | leaders |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = f"{r.tasks_per_s / base:.2f}x" if base else "-"
        where = ", ".join(f"{q}@{n.split('@')[0]}" for q, n in sorted(r.leaders.items())) or "-"
        nodes = " / ".join(f"{n} {us}" for n, us in sorted(r.node_cpu_us.items())) or "-"
        runs = " ".join(f"{rate:,.0f}" for rate in r.runs)
        lines.append(
            f"| {r.partitions} | {r.workers} | {r.tasks} | {r.seconds} | {r.tasks_per_s:,.0f} "
            f"| {runs} | {ratio} | {r.worker_cpu_us} | {r.broker_cpu_us} | {nodes} | {where} |"
        )
    return "\n".join(lines)


def verdict(rows: list[Row], cores: int) -> str:
    """Where scaling stops, from the figures: the machine's CPU or one queue's leader."""
    lines = []
    for r in rows:
        broker = sum(r.node_cpu_us.values()) if r.node_cpu_us else r.broker_cpu_us
        if broker is None or r.worker_cpu_us is None:
            continue
        per_task = broker + r.worker_cpu_us
        busiest = max(r.node_cpu_us.values(), default=broker)
        if per_task <= 0 or busiest <= 0:
            # A run too short for /proc's CPU ticks (10 ms) to count anything: no verdict.
            lines.append(f"k={r.partitions}: {r.tasks_per_s:,.0f} tasks/s; too short to count CPU")
            continue
        lines.append(
            f"k={r.partitions}: {r.tasks_per_s:,.0f} tasks/s; {per_task:.0f} us of CPU per task "
            f"(workers {r.worker_cpu_us:.0f}, cluster {broker:.0f}): {cores} cores allow "
            f"~{cores * 1e6 / per_task:,.0f}/s; the busiest node spends {busiest:.0f} us per "
            f"task, so one core per node would allow ~{1e6 / busiest:,.0f}/s"
        )
    lines.append(
        "Partitions raise the limit of one queue (its leader process: about one core on one "
        "node); they cannot raise the CPU ceiling of the machine. When the rate sits near the "
        "CPU ceiling, more partitions only add per-message broker work."
    )
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.partitions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--partitions", default="1,2,4", help="partition counts to measure")
    parser.add_argument("--brokers", default=DEFAULT_BROKER, help="comma-separated AMQP URLs")
    parser.add_argument("--repeat", type=int, default=1, help="runs per count (median shown)")
    parser.add_argument("--workers", type=int, default=3, help="taskq-worker processes")
    parser.add_argument("--concurrency", type=int, default=200, help="--concurrency per worker")
    parser.add_argument("--classic", action="store_true", help="classic work queues")
    parser.add_argument(
        "--ctl", help="rabbitmqctl command line for a cluster node, to list partition leaders"
    )
    parser.add_argument(
        "--nodes", help="comma-separated node names: broker CPU per node (else every beam.smp)"
    )
    parser.add_argument("--json", help="write every figure to this file")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    brokers = [url.strip() for url in opts.brokers.split(",") if url.strip()]
    counts = [int(k) for k in opts.partitions.split(",")]
    runs: dict[int, list[Row]] = {k: [] for k in counts}
    for _ in range(opts.repeat):  # rounds of every count: a noisy minute hits them all
        for k in counts:
            runs[k].append(await drain(k, opts.tasks, brokers, opts))
    rows = [median_row(runs[k]) for k in counts]
    print(table(rows))
    print()
    print(verdict(rows, os.cpu_count() or 1))
    if opts.json:
        with open(opts.json, "w") as f:
            facts = {"nodes": len(brokers), "cores": os.cpu_count(), "quorum": not opts.classic}
            rows_out = [r.__dict__ for r in rows]
            json.dump({**facts, "worker": WORKER_APP, "rows": rows_out}, f, indent=2)
    return 0 if all(r.left == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
