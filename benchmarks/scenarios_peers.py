"""Peers on the same broker in the same run: Celery, Dramatiq, taskiq + taskiq-aio-pika, each
at its default configuration and at the one its own documentation recommends for throughput
(issue 10: "the benchmark compares against the best").

Each runs in its own subprocesses (clients and workers), on uniquely named queues that are
deleted afterwards. Round trip and fan-out store results in Redis (BENCH_REDIS, default
127.0.0.1:6379/0) under a key prefix unique to the run and the peer, deleted afterwards.
A peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import broker
from . import harness as h
from .harness import Options, Result

PY = sys.executable
TUNED_PREFETCH = 1000  # every system's tuned prefetch in issue 10 (Options.prefetch)


@dataclass(frozen=True)
class WorkerConfig:
    """One way to run a peer's workers: ``processes`` worker processes that run tasks."""

    role: str  # "default" or "tuned"
    variant: str  # the short label in the table
    processes: int
    commands: Callable[[str], list[list[str]]]  # queue -> the commands to start
    env: dict[str, str]
    config: str  # exactly how it runs


@dataclass(frozen=True)
class Peer:
    """How to drive one peer: its package, queue names, worker configurations, clients."""

    system: str
    package: str
    result_package: str
    queues: Callable[[str], list[str]]
    exchanges: Callable[[str], list[str]]
    drains: dict[str, tuple[WorkerConfig, ...]]  # scenario -> its configurations
    enqueue_variants: tuple[tuple[str, dict[str, str], tuple[str, ...], bool], ...]
    # (variant, extra env, client flags, capped at sequential_cap)
    prequeue_flags: tuple[str, ...]  # how the drains' tasks are queued (the fastest client)
    roundtrip: tuple[str, str]  # (variant, client config) with the Redis result backend
    fanout: tuple[str, str]


def celery_command(queue: str, *args: str) -> list[str]:
    """A Celery worker on ``queue`` with ``args`` (pool, concurrency), quiet and lean."""
    return [
        PY,
        "-m",
        "celery",
        "-A",
        "benchmarks.bench_apps.celery_app",
        "worker",
        *args,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        queue,
        "-l",
        "warning",
    ]


CELERY_COMMON = (
    "early ack (default), ignore_result (results: Redis backend), gossip/mingle/"
    "heartbeat/remote control/events off"
)
CELERY = Peer(
    "celery",
    "celery",
    "redis",
    lambda q: [q],
    lambda q: [q],
    {
        "drain": (
            WorkerConfig(
                "default",
                "default: prefork -c 1, prefetch x4",
                1,
                lambda q: [celery_command(q, "-c", "1")],
                {"BENCH_CELERY_PREFETCH": "4"},
                "celery worker -c 1 (prefork pool, its default), "
                f"worker_prefetch_multiplier=4 (default), {CELERY_COMMON}",
            ),
            WorkerConfig(
                "tuned",
                "tuned: -P solo, prefetch 1000",
                1,
                lambda q: [celery_command(q, "-P", "solo", "-c", "1")],
                {"BENCH_CELERY_PREFETCH": str(TUNED_PREFETCH)},
                "celery worker -P solo -c 1, worker_prefetch_multiplier=1000 (prefetch = "
                "-c x multiplier = 1000; without -c 1 solo would take -c = cores = 2 "
                "and prefetch 2000; docs: a large multiplier for many short tasks), "
                f"{CELERY_COMMON}",
            ),
        ),
        "drain2": (
            WorkerConfig(
                "default",
                "default: prefork -c 2, prefetch x4",
                2,
                lambda q: [celery_command(q, "-c", "2")],
                {"BENCH_CELERY_PREFETCH": "4"},
                "celery worker -c 2 (prefork, its default: -c = cores = 2), "
                f"worker_prefetch_multiplier=4 (default), {CELERY_COMMON}",
            ),
            WorkerConfig(
                "tuned",
                "tuned: 2 x -P solo, prefetch 1000",
                2,
                lambda q: [celery_command(q, "-P", "solo", "-c", "1")] * 2,
                {"BENCH_CELERY_PREFETCH": str(TUNED_PREFETCH)},
                f"2 x celery worker -P solo -c 1, worker_prefetch_multiplier=1000, {CELERY_COMMON}",
            ),
        ),
    },
    (
        ("delay() loop, confirms off (default)", {}, ("warm",), False),
        ("delay() loop, confirms on", {"BENCH_CONFIRMS": "1"}, ("warm",), True),
    ),
    (),
    ("delay() + get()", "redis result backend (pub/sub), confirms off (default)"),
    (
        "delay() loop + ResultSet.get()",
        "sync client: sends in a loop, joins natively; redis results, confirms off (default)",
    ),
)


def dramatiq_command(processes: int, threads: int) -> Callable[[str], list[list[str]]]:
    """queue -> the command of a Dramatiq worker with ``processes`` x ``threads``."""
    return lambda q: [
        [
            PY,
            "-m",
            "dramatiq",
            "benchmarks.bench_apps.dramatiq_app",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "-Q",
            q,
        ]
    ]


DRAMATIQ_COMMON = "RabbitmqBroker (pika), max_retries=0"
DRAMATIQ_TUNED = {"dramatiq_queue_prefetch": str(TUNED_PREFETCH)}  # read by dramatiq.worker
DRAMATIQ = Peer(
    "dramatiq",
    "dramatiq",
    "redis",
    lambda q: [q, f"{q}.DQ", f"{q}.XQ"],
    lambda q: [],
    {
        "drain": (
            WorkerConfig(
                "default",
                "default: 1 process x 8 threads",
                1,
                dramatiq_command(1, 8),
                {},
                "dramatiq --processes 1 --threads 8 (threads: its default), prefetch "
                f"2 x threads = 16 (default), {DRAMATIQ_COMMON}",
            ),
            WorkerConfig(
                "tuned",
                "tuned: --threads 1, prefetch 1000",
                1,
                dramatiq_command(1, 1),
                DRAMATIQ_TUNED,
                "dramatiq --processes 1 --threads 1, "
                f"dramatiq_queue_prefetch=1000 (env), {DRAMATIQ_COMMON}",
            ),
        ),
        "drain2": (
            WorkerConfig(
                "default",
                "default: 2 processes x 8 threads",
                2,
                dramatiq_command(2, 8),
                {},
                "dramatiq --processes 2 --threads 8 (its default on 2 cores), prefetch 16 "
                f"per process (default), {DRAMATIQ_COMMON}",
            ),
            WorkerConfig(
                "tuned",
                "tuned: --processes 2 --threads 4, prefetch 1000",
                2,
                dramatiq_command(2, 4),
                DRAMATIQ_TUNED,
                "dramatiq --processes 2 --threads 4, "
                f"dramatiq_queue_prefetch=1000 (env), {DRAMATIQ_COMMON}",
            ),
        ),
    },
    (
        ("send() loop, confirms off (default)", {}, ("warm",), False),
        ("send() loop, confirms on", {"BENCH_CONFIRMS": "1"}, ("warm",), True),
    ),
    (),
    ("send() + get_result(block)", "Results + RedisBackend (BRPOPLPUSH), confirms off (default)"),
    (
        "send() loop + get_result(block) each",
        "sync client: sends in a loop, then blocks on "
        "each result; RedisBackend, confirms off (default)",
    ),
)


def _taskiq(workers: int, *args: str) -> Callable[[str], list[list[str]]]:
    return lambda q: [
        [
            PY,
            "-m",
            "taskiq",
            "worker",
            "benchmarks.bench_apps.taskiq_app:broker",
            "--workers",
            str(workers),
            # its default, INFO, logs "Executing task" for every message (receiver.py)
            "--log-level",
            "WARNING",
            *args,
        ]
    ]


TASKIQ_COMMON = (
    "taskiq-aio-pika, classic queue (its default is quorum), persistent, "
    "confirms on, ack when saved (default), uvloop, --log-level WARNING (its default INFO "
    "logs a line per task)"
)


def _taskiq_configs(workers: int) -> tuple[WorkerConfig, WorkerConfig]:
    """taskiq's default (qos 10, --max-async-tasks 100) and tuned configuration."""
    scale = f"--workers {workers}" + (" (its default)" if workers == 2 else "")
    return (
        WorkerConfig(
            "default",
            f"default: --workers {workers}, qos 10",
            workers,
            _taskiq(workers),
            {"BENCH_TASKIQ_QOS": "10"},
            f"taskiq worker {scale}, qos=10 and --max-async-tasks 100 (defaults), {TASKIQ_COMMON}",
        ),
        WorkerConfig(
            "tuned",
            f"tuned: --workers {workers}, qos 1000, --max-async-tasks 1000",
            workers,
            _taskiq(workers, "--max-async-tasks", "1000"),
            {"BENCH_TASKIQ_QOS": str(TUNED_PREFETCH)},
            f"taskiq worker {scale} --max-async-tasks 1000, qos=1000, {TASKIQ_COMMON}",
        ),
    )


TASKIQ = Peer(
    "taskiq",
    "taskiq_aio_pika",
    "taskiq_redis",
    lambda q: [q, f"{q}.dead"],
    lambda q: [q],
    {"drain": _taskiq_configs(1), "drain2": _taskiq_configs(2)},
    (
        ("gather kiq(), confirms on", {}, ("warm", "gather"), False),
        ("await each kiq(), confirms on", {}, ("warm",), True),
    ),
    ("gather",),
    (
        "kiq() + wait_result()",
        "taskiq-redis RedisAsyncResultBackend polled every 1 ms "
        "(default 200 ms), JSON, confirms on",
    ),
    (
        "gather kiq() + wait_result() each",
        "concurrent sends (confirms on), then results "
        "polled in send order every 1 ms; taskiq-redis",
    ),
)

PEERS = {p.system: p for p in (CELERY, DRAMATIQ, TASKIQ)}


def installed(system: str) -> bool:
    return importlib.util.find_spec(PEERS[system].package) is not None


async def send_tasks(
    peer: Peer, queue: str, n: int, env: dict[str, str], flags: tuple[str, ...]
) -> float:
    """Send ``n`` tasks to ``queue`` with the peer's own client (``peer_enqueue``, a process
    of its own, ``env`` added to its environment): the seconds the sends took."""
    env = {"BENCH_QUEUE": queue, "BENCH_BROKER": broker.BROKER, "PYTHONPATH": str(h.REPO), **env}
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "benchmarks.bench_apps.peer_enqueue",
        peer.system,
        str(n),
        *flags,
        cwd=h.REPO,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("SECONDS "):
            return float(line.split()[1])
    raise RuntimeError(f"{peer.system} enqueue failed ({proc.returncode}):\n{text[-3000:]}")


async def enqueue(peer: Peer, queue: str, opts: Options) -> list[Result]:
    results = []
    for variant, env, flags, capped in peer.enqueue_variants:
        n = min(opts.tasks, opts.sequential_cap) if capped else opts.tasks
        h.progress(f"{peer.system} enqueue: {variant}, {n} tasks")
        seconds = await send_tasks(peer, queue, n, env, flags)
        depth = await broker.queue_depth(queue)
        counted = None if depth is None else depth - 1  # minus the warm-up task
        results.append(
            h.rate(peer.system, "enqueue", variant, "persistent", n, seconds, counted=counted)
        )
        await broker.purge(queue)
    return results


def drain(peer: Peer, queue: str, scenario: str, config: WorkerConfig) -> h.Drain:
    return h.Drain(
        peer.system,
        scenario,
        config.variant,
        config.config,
        config.commands(queue),
        {"BENCH_QUEUE": queue, "BENCH_BROKER": broker.BROKER, **config.env},
        queue,
        config.processes,
        config.role,
    )


async def client_output(
    module: str, args: list[str], env: dict[str, str], workers: h.Workers, timeout: float
) -> tuple[str, int | None]:
    """Run ``python -m module args`` (a peer's client) against the running ``workers``,
    failing early if one of them dies: its output and exit code."""
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        module,
        *args,
        cwd=h.REPO,
        env={**os.environ, **env, "PYTHONPATH": str(h.REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = asyncio.ensure_future(proc.communicate())
    try:
        deadline = time.monotonic() + timeout
        while not output.done():
            workers.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} {' '.join(args)} still running")
            await asyncio.wait({output}, timeout=h.POLL * 4)
        return output.result()[0].decode(errors="replace"), proc.returncode
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output.cancel()


def result_line(text: str) -> dict[str, Any] | None:
    """The JSON of a client's ``RESULT {json}`` line (None: it printed none)."""
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    return None


async def _results_client(
    peer: Peer, env: dict[str, str], roundtrips: int, fanout: int, workers: h.Workers
) -> dict[str, Any]:
    """Run ``peer_results`` against the running worker; fail early if the worker dies."""
    text, code = await client_output(
        "benchmarks.bench_apps.peer_results",
        [peer.system, str(roundtrips), str(fanout)],
        env,
        workers,
        300 + (roundtrips + fanout) / 20,
    )
    result = result_line(text)
    if result is None:
        raise RuntimeError(
            f"{peer.system} results client failed ({code}):\n{text[-3000:]}\n{workers.output()}"
        )
    return result


async def with_results(
    peer: Peer, queue: str, opts: Options, config: WorkerConfig, redis_prefix: str
) -> list[Result]:
    """Round trip and fan-out against one worker configuration, results through Redis."""
    roundtrips = opts.roundtrips if "roundtrip" in opts.scenarios else 0
    fanout = opts.fanout if "fanout" in opts.scenarios else 0
    env = {
        "BENCH_QUEUE": queue,
        "BENCH_BROKER": broker.BROKER,
        "BENCH_REDIS": broker.REDIS,
        "BENCH_REDIS_PREFIX": redis_prefix,
        **config.env,
    }
    label = f"{peer.system} roundtrip/fanout [{config.variant}]"
    variants = {
        "roundtrip": f"{config.role}: {peer.roundtrip[0]}",
        "fanout": f"{config.role}: {peer.fanout[0]}",
    }
    configs = {
        "roundtrip": f"{peer.roundtrip[1]}; worker: {config.config}",
        "fanout": f"{peer.fanout[1]}; worker: {config.config}",
    }
    try:
        if importlib.util.find_spec(peer.result_package) is None:
            raise RuntimeError(f"{peer.result_package} not installed (pip install -e '.[bench]')")
        h.progress(f"{label}: {roundtrips} round trips, {fanout} fan-out")
        workers = h.Workers(config.commands(queue), env)
        try:
            out = await _results_client(peer, env, roundtrips, fanout, workers)
        finally:
            await workers.stop()
    except (RuntimeError, TimeoutError) as exc:
        return [
            h.failed(peer.system, s, variants[s], configs[s], opts.count(s), exc, config.role)
            for s in ("roundtrip", "fanout")
            if s in opts.scenarios
        ]
    results = []
    if roundtrips:
        results.append(
            h.latency(
                peer.system,
                "roundtrip",
                variants["roundtrip"],
                configs["roundtrip"],
                out["samples"],
                out["roundtrip_s"],
                config.role,
            )
        )
    if fanout:
        results.append(
            h.rate(
                peer.system,
                "fanout",
                variants["fanout"],
                configs["fanout"],
                fanout,
                out["fanout_s"],
                config.role,
                counted=out["counted"],
            )
        )
    return results


async def run(system: str, opts: Options, prefix: str) -> list[Result]:
    """Every selected scenario for one peer: enqueue, drain, drain2 (each configuration),
    roundtrip and fanout (against each one-process configuration)."""
    peer = PEERS[system]
    queue = f"{prefix}_{system}"
    results: list[Result] = []
    start = time.perf_counter()
    try:
        if "enqueue" in opts.scenarios:
            results += await h.steadily(
                f"{system} enqueue", lambda: enqueue(peer, queue, opts), lambda: broker.purge(queue)
            )
        for scenario in ("drain", "drain2"):
            if scenario in opts.scenarios:
                for config in peer.drains[scenario]:
                    results.append(
                        await h.measure_drain(
                            drain(peer, queue, scenario, config),
                            opts.tasks,
                            lambda n: send_tasks(peer, queue, n, {}, peer.prequeue_flags),
                        )
                    )
        if {"roundtrip", "fanout"} & set(opts.scenarios):
            for config in peer.drains["drain"]:
                results += await h.steadily(
                    f"{system} roundtrip/fanout [{config.variant}]",
                    lambda config=config: with_results(peer, queue, opts, config, queue),
                    lambda: broker.purge(queue),
                )
    finally:
        try:
            await broker.delete(queues=peer.queues(queue), exchanges=peer.exchanges(queue))
        finally:
            if {"roundtrip", "fanout"} & set(opts.scenarios):
                deleted = await broker.delete_redis_keys(queue)
                h.progress(f"{system}: deleted {deleted} result keys from Redis")
    h.progress(f"{system}: done in {time.perf_counter() - start:.0f} s")
    return results
