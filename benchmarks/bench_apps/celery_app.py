"""Celery benchmark app: BENCH_QUEUE names the queue and exchange; results ignored.

Run: celery -A benchmarks.bench_apps.celery_app worker -P solo --without-gossip
--without-mingle --without-heartbeat -Q $BENCH_QUEUE
"""

from __future__ import annotations

import os

from celery import Celery

from .counter import hit

QUEUE = os.environ.get("BENCH_QUEUE", "bench.celery")
app = Celery("bench", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH", "64")),
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if os.environ.get("BENCH_CONFIRMS") == "1":
    app.conf.broker_transport_options = {"confirm_publish": True}


@app.task(name="noop")
def noop(i: int) -> int:
    hit()
    return i
