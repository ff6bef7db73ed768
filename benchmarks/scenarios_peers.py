"""Peers on the same broker in the same run: Celery, Dramatiq, taskiq + taskiq-aio-pika.

Each runs in its own subprocesses (enqueue client and workers), on uniquely named queues that
are deleted afterwards. A peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import harness as h
from .harness import Options, Result

PY = sys.executable


@dataclass(frozen=True)
class Peer:
    """How to drive one peer: its module, workers, queue names, enqueue variants."""

    system: str
    package: str
    worker: Callable[[str], list[str]]
    queues: Callable[[str], list[str]]
    exchanges: Callable[[str], list[str]]
    enqueue_variants: tuple[tuple[str, dict[str, str], str, bool], ...]
    # (variant, extra env, extra argv, capped at sequential_cap)
    worker_config: str


PEERS = {
    "celery": Peer(
        "celery", "celery",
        lambda q: [PY, "-m", "celery", "-A", "benchmarks.bench_apps.celery_app", "worker",
                   "-P", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat",
                   "-Q", q, "-l", "warning"],
        lambda q: [q], lambda q: [q],
        (("delay() loop, confirms off (default)", {}, "warm", False),
         ("delay() loop, confirms on", {"BENCH_CONFIRMS": "1"}, "warm", True)),
        "solo pool, prefetch multiplier 64, early ack (default), ignore_result, "
        "no gossip/mingle/heartbeat/remote control",
    ),
    "dramatiq": Peer(
        "dramatiq", "dramatiq",
        lambda q: [PY, "-m", "dramatiq", "benchmarks.bench_apps.dramatiq_app",
                   "--processes", "1", "--threads", "8", "-Q", q],
        lambda q: [q, f"{q}.DQ", f"{q}.XQ"], lambda q: [],
        (("send() loop, confirms off (default)", {}, "warm", False),
         ("send() loop, confirms on", {"BENCH_CONFIRMS": "1"}, "warm", True)),
        "RabbitmqBroker (pika), 1 process x 8 threads, max_retries=0",
    ),
    "taskiq": Peer(
        "taskiq", "taskiq_aio_pika",
        lambda q: [PY, "-m", "taskiq", "worker", "benchmarks.bench_apps.taskiq_app:broker",
                   "--workers", "1"],
        lambda q: [q, f"{q}.dead"], lambda q: [q],
        (("gather kiq(), confirms on", {}, "gather", False),
         ("await each kiq(), confirms on", {}, "warm", True)),
        "taskiq-aio-pika, classic queue, qos 64, 1 worker process",
    ),
}


def installed(system: str) -> bool:
    return importlib.util.find_spec(PEERS[system].package) is not None


async def _enqueue(peer: Peer, queue: str, n: int, env: dict[str, str], arg: str) -> float:
    env = {"BENCH_QUEUE": queue, "BENCH_BROKER": h.BROKER, "PYTHONPATH": str(h.REPO), **env}
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "benchmarks.bench_apps.peer_enqueue", peer.system, str(n), arg,
        cwd=h.REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("SECONDS "):
            return float(line.split()[1])
    raise RuntimeError(f"{peer.system} enqueue failed ({proc.returncode}):\n{text[-3000:]}")


async def enqueue(peer: Peer, queue: str, opts: Options) -> list[Result]:
    results = []
    for variant, env, arg, capped in peer.enqueue_variants:
        n = min(opts.tasks, opts.sequential_cap) if capped else opts.tasks
        h.progress(f"{peer.system} enqueue: {variant}, {n} tasks")
        seconds = await _enqueue(peer, queue, n, env, arg)
        depth = await h.queue_depth(queue)
        counted = None if depth is None else depth - 1  # minus the warm-up task
        results.append(h.rate(peer.system, "enqueue", variant, "persistent", n, seconds,
                              counted=counted))
        await h.purge(queue)
    return results


async def drain(peer: Peer, queue: str, opts: Options, processes: int) -> Result:
    scenario = "drain" if processes == 1 else f"drain{processes}"
    h.progress(f"{peer.system} {scenario}: queueing {opts.tasks} tasks")
    await _enqueue(peer, queue, opts.tasks, {}, "none")
    workers = h.Workers([peer.worker(queue)] * processes,
                        {"BENCH_QUEUE": queue, "BENCH_BROKER": h.BROKER})
    timing = await h.drain(f"{peer.system} {scenario}", workers, opts.tasks, queue)
    seconds = timing.pop("seconds")
    return h.rate(peer.system, scenario, f"{processes} x worker process", peer.worker_config,
                  opts.tasks, seconds, **timing)


async def run(system: str, opts: Options, prefix: str) -> list[Result]:
    """Every selected scenario a peer supports here (enqueue, drain, drain2)."""
    peer = PEERS[system]
    queue = f"{prefix}_{system}"
    results: list[Result] = []
    start = time.perf_counter()
    try:
        if "enqueue" in opts.scenarios:
            results += await enqueue(peer, queue, opts)
        for processes, scenario in ((1, "drain"), (2, "drain2")):
            if scenario in opts.scenarios:
                try:
                    results.append(await drain(peer, queue, opts, processes))
                except (RuntimeError, TimeoutError) as exc:  # keep the other figures
                    h.progress(f"{system} {scenario} failed: {str(exc)[:1500]}")
                    results.append(h.Result(system, scenario, "failed", str(exc)[:300],
                                            opts.tasks, 0.0, 0))
                    await h.purge(queue)
    finally:
        await h.delete(queues=peer.queues(queue), exchanges=peer.exchanges(queue))
    h.progress(f"{system}: done in {time.perf_counter() - start:.0f} s")
    return results
