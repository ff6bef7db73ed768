"""Dramatiq benchmark app: BENCH_QUEUE names the actor's queue; BENCH_CONFIRMS=1 confirms.

Run: dramatiq benchmarks.bench_apps.dramatiq_app --processes 1 --threads 8 -Q $BENCH_QUEUE
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from .counter import hit

QUEUE = os.environ.get("BENCH_QUEUE", "bench_dramatiq")
broker = RabbitmqBroker(
    url=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    confirm_delivery=os.environ.get("BENCH_CONFIRMS") == "1",
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(i: int) -> None:
    hit()
