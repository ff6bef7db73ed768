"""taskiq + taskiq-aio-pika benchmark app: BENCH_QUEUE names the queue and exchange.

Best configuration found: classic queue (the default is quorum, slower on 3.10), qos 64,
persistent messages and publisher confirms (taskiq-aio-pika's defaults).
Run: taskiq worker benchmarks.bench_apps.taskiq_app:broker --workers 1
"""

from __future__ import annotations

import os

from taskiq_aio_pika import AioPikaBroker
from taskiq_aio_pika.exchange import Exchange
from taskiq_aio_pika.queue import Queue, QueueType

from .counter import hit

QUEUE = os.environ.get("BENCH_QUEUE", "bench_taskiq")
broker = AioPikaBroker(
    os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    qos=64,
    exchange=Exchange(name=QUEUE),
    task_queues=[Queue(name=QUEUE, type=QueueType.CLASSIC)],
    dead_letter_queue=Queue(name=f"{QUEUE}.dead", type=QueueType.CLASSIC),
)


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    hit()
