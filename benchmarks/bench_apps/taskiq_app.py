"""taskiq + taskiq-aio-pika benchmark app: BENCH_QUEUE names the queue and exchange.

Classic queue (the default is quorum, slower on 3.10), persistent messages and publisher
confirms (taskiq-aio-pika's defaults); qos from BENCH_TASKIQ_QOS (default 10, as the broker's).
With BENCH_REDIS_PREFIX set, results go to taskiq-redis's RedisAsyncResultBackend at
BENCH_REDIS (default redis://127.0.0.1:6379/0), keys prefixed with BENCH_REDIS_PREFIX, JSON
(its default serializer is pickle).
Run: taskiq worker benchmarks.bench_apps.taskiq_app:broker --workers 1
"""

from __future__ import annotations

import os

from taskiq_aio_pika import AioPikaBroker
from taskiq_aio_pika.exchange import Exchange
from taskiq_aio_pika.queue import Queue, QueueType

from .counter import hit

QUEUE = os.environ.get("BENCH_QUEUE", "bench_taskiq")
REDIS_PREFIX = os.environ.get("BENCH_REDIS_PREFIX")
broker = AioPikaBroker(
    os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    qos=int(os.environ.get("BENCH_TASKIQ_QOS", "10")),
    exchange=Exchange(name=QUEUE),
    task_queues=[Queue(name=QUEUE, type=QueueType.CLASSIC)],
    dead_letter_queue=Queue(name=f"{QUEUE}.dead", type=QueueType.CLASSIC),
)
if REDIS_PREFIX is not None:
    from taskiq.serializers import JSONSerializer
    from taskiq_redis import RedisAsyncResultBackend

    broker = broker.with_result_backend(
        RedisAsyncResultBackend(
            os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0"),
            prefix_str=REDIS_PREFIX,
            serializer=JSONSerializer(),
            result_ex_time=600,
            # a bounded pool: concurrent waiters share connections instead of opening one each
            max_connection_pool_size=16,
        )
    )


@broker.task(task_name="noop")
async def noop(i: int) -> int | None:
    hit()
    # no result backend: nothing would read a value (taskiq's dummy backend drops it)
    return i if REDIS_PREFIX is not None else None
