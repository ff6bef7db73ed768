"""Peers on the same broker in the same run: Celery, Dramatiq, taskiq + taskiq-aio-pika.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import harness as h
from .harness import Options, Result

PY = sys.executable
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")


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
    roundtrip: tuple[str, str]  # (variant, config) with the Redis result backend
    fanout: tuple[str, str]


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
        ("delay() + get()", "redis result backend (pub/sub), confirms off (default), solo "
         "pool, no gossip/mingle/heartbeat/remote control"),
        ("delay() loop + ResultSet.get()", "sync client: sends in a loop, joins natively; "
         "redis results, confirms off (default), solo pool"),
    ),
    "dramatiq": Peer(
        "dramatiq", "dramatiq",
        lambda q: [PY, "-m", "dramatiq", "benchmarks.bench_apps.dramatiq_app",
                   "--processes", "1", "--threads", "8", "-Q", q],
        lambda q: [q, f"{q}.DQ", f"{q}.XQ"], lambda q: [],
        (("send() loop, confirms off (default)", {}, "warm", False),
         ("send() loop, confirms on", {"BENCH_CONFIRMS": "1"}, "warm", True)),
        "RabbitmqBroker (pika), 1 process x 8 threads, max_retries=0",
        ("send() + get_result(block)", "Results + RedisBackend (BRPOPLPUSH), confirms off "
         "(default), 1 process x 8 threads"),
        ("send() loop + get_result(block) each", "sync client: sends in a loop, then blocks "
         "on each result; RedisBackend, confirms off (default), 1 process x 8 threads"),
    ),
    "taskiq": Peer(
        "taskiq", "taskiq_aio_pika",
        lambda q: [PY, "-m", "taskiq", "worker", "benchmarks.bench_apps.taskiq_app:broker",
                   "--workers", "1"],
        lambda q: [q, f"{q}.dead"], lambda q: [q],
        (("gather kiq(), confirms on", {}, "gather", False),
         ("await each kiq(), confirms on", {}, "warm", True)),
        "taskiq-aio-pika, classic queue, qos 64, 1 worker process",
        ("kiq() + wait_result()", "taskiq-redis RedisAsyncResultBackend polled every 1 ms "
         "(default 200 ms), JSON, confirms on, classic queue, 1 worker process"),
        ("gather kiq() + wait_result() each", "concurrent sends (confirms on), then results "
         "polled in send order every 1 ms; taskiq-redis, classic queue, 1 worker process"),
    ),
}


async def _guarded(system: str, opts: Options, work: Awaitable[list[Result]]) -> list[Result]:
    """Round trip and fan-out rows, or 'failed' rows that keep the other figures."""
    try:
        return await work
    except (RuntimeError, TimeoutError) as exc:
        h.progress(f"{system} roundtrip/fanout failed: {str(exc)[:1500]}")
        return [h.Result(system, scenario, "failed", str(exc)[:300],
                         opts.roundtrips if scenario == "roundtrip" else opts.fanout, 0.0, 0)
                for scenario in ("roundtrip", "fanout") if scenario in opts.scenarios]


RESULT_PACKAGES = {"celery": "redis", "dramatiq": "redis", "taskiq": "taskiq_redis"}


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


async def _results_client(peer: Peer, env: dict[str, str], roundtrips: int, fanout: int,
                          workers: h.Workers) -> dict[str, Any]:
    """Run ``peer_results`` against the running worker; fail early if the worker dies."""
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "benchmarks.bench_apps.peer_results", peer.system, str(roundtrips),
        str(fanout), cwd=h.REPO, env={**os.environ, **env, "PYTHONPATH": str(h.REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = asyncio.ensure_future(proc.communicate())
    try:
        deadline = time.monotonic() + 300 + (roundtrips + fanout) / 20
        while not output.done():
            workers.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{peer.system} results client still running")
            await asyncio.wait({output}, timeout=h.POLL * 4)
        text = output.result()[0].decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output.cancel()
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    raise RuntimeError(f"{peer.system} results client failed ({proc.returncode}):\n"
                       f"{text[-3000:]}\n{workers.output()}")


async def with_results(peer: Peer, queue: str, opts: Options, redis_prefix: str) -> list[Result]:
    """Round trip and fan-out against one worker process, results through Redis."""
    missing = importlib.util.find_spec(RESULT_PACKAGES[peer.system]) is None
    if missing:
        raise RuntimeError(f"{RESULT_PACKAGES[peer.system]} not installed "
                           "(pip install -e '.[bench]')")
    roundtrips = opts.roundtrips if "roundtrip" in opts.scenarios else 0
    fanout = opts.fanout if "fanout" in opts.scenarios else 0
    env = {"BENCH_QUEUE": queue, "BENCH_BROKER": h.BROKER, "BENCH_REDIS": REDIS,
           "BENCH_REDIS_PREFIX": redis_prefix}
    h.progress(f"{peer.system} roundtrip/fanout: {roundtrips} round trips, {fanout} fan-out")
    workers = h.Workers([peer.worker(queue)], env)
    try:
        out = await _results_client(peer, env, roundtrips, fanout, workers)
    finally:
        await workers.stop()
    results = []
    if roundtrips:
        results.append(h.latency(peer.system, "roundtrip", *peer.roundtrip, out["samples"],
                                 out["roundtrip_s"]))
    if fanout:
        results.append(h.rate(peer.system, "fanout", *peer.fanout, fanout, out["fanout_s"],
                              counted=out["counted"]))
    return results


async def delete_redis_keys(prefix: str) -> int:
    """Delete every Redis key starting with ``prefix``; return how many were deleted."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS)
    deleted = 0
    try:
        batch = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


async def run(system: str, opts: Options, prefix: str) -> list[Result]:
    """Every selected scenario for one peer: enqueue, drain, drain2, roundtrip, fanout."""
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
        if {"roundtrip", "fanout"} & set(opts.scenarios):
            results += await _guarded(system, opts, with_results(peer, queue, opts, queue))
    finally:
        try:
            await h.delete(queues=peer.queues(queue), exchanges=peer.exchanges(queue))
        finally:
            if {"roundtrip", "fanout"} & set(opts.scenarios):
                deleted = await delete_redis_keys(queue)
                h.progress(f"{system}: deleted {deleted} result keys from Redis")
    h.progress(f"{system}: done in {time.perf_counter() - start:.0f} s")
    return results
