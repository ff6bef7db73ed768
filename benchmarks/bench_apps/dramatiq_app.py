"""Dramatiq benchmark app: BENCH_QUEUE names the actor's queue; BENCH_CONFIRMS=1 confirms.

With BENCH_REDIS_PREFIX set, the Results middleware stores every result in a RedisBackend at
BENCH_REDIS (default redis://127.0.0.1:6379/0) under keys prefixed with BENCH_REDIS_PREFIX
(``namespace`` with ``use_namespace_prefix_keys``), so the harness can delete them. Without it
the actor returns None, as Dramatiq intends: a value returned with no Results middleware is
discarded with a WARNING logged for every message (dramatiq/worker.py, ``process_message``).

Run: dramatiq benchmarks.bench_apps.dramatiq_app --processes 1 --threads 8 -Q $BENCH_QUEUE
Its prefetch is Dramatiq's own setting: the environment variable ``dramatiq_queue_prefetch``,
read when ``dramatiq.worker`` is imported (default 0: 2 x threads).
"""

from __future__ import annotations

import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from .counter import hit
from .work import spin as add_up

QUEUE = os.environ.get("BENCH_QUEUE", "bench_dramatiq")
REDIS_PREFIX = os.environ.get("BENCH_REDIS_PREFIX")
broker = RabbitmqBroker(
    url=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    confirm_delivery=os.environ.get("BENCH_CONFIRMS") == "1",
)
backend = None
actor_options: dict[str, Any] = {}
if REDIS_PREFIX is not None:
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    backend = RedisBackend(
        namespace=REDIS_PREFIX,
        use_namespace_prefix_keys=True,
        url=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"),
    )
    broker.add_middleware(Results(backend=backend, result_ttl=600_000))
    actor_options["store_results"] = True
    if os.environ.get("BENCH_DRAMATIQ_GROUPS") == "1":
        # benchmarks/workflows.py: group completion callbacks keep their barrier in Redis
        from dramatiq.middleware import GroupCallbacks
        from dramatiq.rate_limits.backends import RedisBackend as RateLimiterBackend

        limiter = RateLimiterBackend(url=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"))
        # the barrier keys (one per group, not prefixed) expire after 10 minutes
        broker.add_middleware(GroupCallbacks(limiter, barrier_ttl=600_000))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0, **actor_options)
def noop(i: int) -> int | None:
    hit()
    return i if backend is not None else None


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def spin(iterations: int) -> None:
    """benchmarks/pool.py's CPU-bound task: count the start, add, count the end."""
    hit()
    add_up(iterations)
    hit()


# benchmarks/workflows.py (with the Results middleware): a group's members note when they end
# (wall clock); its completion callback, which Dramatiq gives no results, notes when it starts.
@dramatiq.actor(queue_name=QUEUE, max_retries=0, **actor_options)
def wf_member(i: int) -> float:
    return time.time()


@dramatiq.actor(queue_name=QUEUE, max_retries=0, **actor_options)
def wf_collect() -> float:
    return time.time()


@dramatiq.actor(queue_name=QUEUE, max_retries=0, **actor_options)
def wf_step(i: int) -> int:
    return i + 1
