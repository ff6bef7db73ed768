"""Celery app of benchmarks/limits.py: Celery's own ``rate_limit`` (per worker) on the task
that taskq limits fleet-wide. BENCH_QUEUE names the queue, BENCH_RATE the limit."""

from __future__ import annotations

import os

from celery import Celery

from .stamps import stamp

QUEUE = os.environ.get("BENCH_QUEUE", "bench.limits.celery")
app = Celery(
    "bench-limits", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
)
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="metered", rate_limit=os.environ.get("BENCH_RATE", "50/s"))
def metered(i: int) -> None:
    stamp("s")
