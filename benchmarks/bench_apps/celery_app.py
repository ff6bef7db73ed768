"""Celery benchmark app: BENCH_QUEUE names the queue and exchange.

Results are ignored unless BENCH_REDIS_PREFIX is set: then they go to the Redis result
backend at BENCH_REDIS (default redis://127.0.0.1:6379/0), every key and pub/sub channel
prefixed with ``$BENCH_REDIS_PREFIX:`` (``global_keyprefix``) so the harness can delete them.

BENCH_CELERY_PREFETCH sets worker_prefetch_multiplier (default 4, as Celery's);
BENCH_CELERY_ACKS_LATE=1 sets task_acks_late (ack after the task: at-least-once, as taskq and
Dramatiq; Celery's default acks before it runs).

Run: celery -A benchmarks.bench_apps.celery_app worker -P solo --without-gossip
--without-mingle --without-heartbeat -Q $BENCH_QUEUE
"""

from __future__ import annotations

import os
import time

from celery import Celery

from .counter import hit
from .work import spin as add_up

QUEUE = os.environ.get("BENCH_QUEUE", "bench.celery")
REDIS_PREFIX = os.environ.get("BENCH_REDIS_PREFIX")
app = Celery("bench", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_ignore_result=REDIS_PREFIX is None,
    # per process of the pool (solo: one); 4 is Celery's default
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "4")),
    task_acks_late=os.environ.get("BENCH_CELERY_ACKS_LATE") == "1",
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if REDIS_PREFIX is not None:
    app.conf.update(
        result_backend=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"),
        result_backend_transport_options={"global_keyprefix": f"{REDIS_PREFIX}:"},
        result_expires=600,
        result_extended=False,
    )
if os.environ.get("BENCH_CONFIRMS") == "1":
    app.conf.broker_transport_options = {"confirm_publish": True}


@app.task(name="noop")
def noop(i: int) -> int | None:
    hit()
    # ignore_result is on without a backend (Celery's advice for results never read)
    return i if REDIS_PREFIX is not None else None


@app.task(name="spin")
def spin(iterations: int) -> None:
    """benchmarks/pool.py's CPU-bound task: count the start, add, count the end."""
    hit()
    add_up(iterations)
    hit()


# benchmarks/workflows.py: a chord's members note when they end (wall clock, comparable across
# the processes of one machine); its callback notes when it starts and gets every member's.
@app.task(name="wf_member")
def wf_member(i: int) -> float:
    return time.time()


@app.task(name="wf_collect")
def wf_collect(ends: list[float]) -> list[float]:
    """[members, callback start, last member end]."""
    return [len(ends), time.time(), max(ends)]


@app.task(name="wf_step")
def wf_step(i: int) -> int:
    return i + 1
