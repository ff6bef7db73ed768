"""Celery's chord and Dramatiq's group with a completion callback, each with its chain
(Dramatiq: pipeline), for benchmarks/workflows.py, in the same run.

Each peer runs one worker process at its tuned one-process configuration of
benchmarks/scenarios_peers.py (Celery ``-P solo``, prefetch 1000; Dramatiq ``--threads 1``,
prefetch 1000) with its Redis result backend, and its own client in a process of its own
(benchmarks/bench_apps/peer_workflows.py), on a queue and a Redis key prefix unique to the run,
deleted afterwards. A peer that is not installed is left out with a note.

What each one's callback gets: Celery's chord callback gets the list of results (its Redis
backend counts the members in Redis and the last one sends the callback: no chord_unlock
polling); Dramatiq's completion callback gets nothing (a Redis barrier counts the members),
so its figure is a lower bound for a callback that needs the results.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import broker
from . import harness as h
from .scenarios_peers import CELERY, DRAMATIQ, Peer, client_output, installed, result_line

PEERS = (CELERY, DRAMATIQ)
ONE_PROCESS = "tuned"  # the configuration of each peer's one-process drain used here


async def measure_peer(
    peer: Peer, members: int, steps: int, runs: int, prefix: str
) -> dict[str, Any]:
    """The peer's figures (or ``{"skipped": why}``): chord tasks/s and callback delay (p50),
    chain steps/s."""
    if not installed(peer.system):
        return {"skipped": f"{peer.package} not installed (pip install -e '.[bench]')"}
    [config] = [c for c in peer.drains["drain"] if c.role == ONE_PROCESS]
    queue = f"{prefix}_{peer.system}"
    env = {
        "BENCH_QUEUE": queue,
        "BENCH_BROKER": broker.BROKER,
        "BENCH_REDIS": broker.REDIS,
        "BENCH_REDIS_PREFIX": queue,
        "BENCH_DRAMATIQ_GROUPS": "1",
        **config.env,
    }
    h.progress(f"{peer.system} workflows: chord of {members} x {runs}, chain of {steps}")
    try:
        workers = h.Workers(config.commands(queue), env)
        try:
            out = await _client(peer.system, env, [members, steps, runs], workers)
        finally:
            await workers.stop()
    finally:
        await broker.delete(queues=peer.queues(queue), exchanges=peer.exchanges(queue))
        await broker.delete_redis_keys(queue)
    chord_s = statistics.median(out["chord_s"])
    return {
        "config": config.config,
        "chord_tasks_per_s": round(members / chord_s),
        "callback_delay_ms_p50": round(1000 * statistics.median(out["delay_s"]), 2),
        "chain_steps_per_s": (
            round(steps / statistics.median(out["chain_s"])) if out["chain_s"] else None
        ),
        "chain_failed": out["chain_error"],
    }


async def _client(system: str, env: dict[str, str], args: list[int], workers: h.Workers) -> Any:
    """Run peer_workflows against the running worker; fail early if the worker dies."""
    members, steps, runs = args
    text, code = await client_output(
        "benchmarks.bench_apps.peer_workflows",
        [system, *map(str, args)],
        env,
        workers,
        120 + members * runs / 50 + steps,
    )
    result = result_line(text)
    if result is None:
        raise RuntimeError(f"{system} workflows client failed ({code}):\n{text[-3000:]}")
    return result
