"""Priorities: a high-priority task overtakes low-priority ones already waiting in the queue.

Run a worker that takes one task at a time, so that the others wait in the queue::

    cd examples/priorities
    taskq-worker tasks:app --concurrency 1

then, in another shell, ``python send.py``.

Work queues are declared with ``x-max-priority`` (the ``max_priority`` setting, 10 by
default): RabbitMQ hands out the highest-priority message waiting first. A message already
delivered to a worker (prefetched) is not overtaken, hence ``--concurrency 1`` (which is also
the prefetch) to make the effect plain.
"""

import asyncio
import os
import time

from taskq import App

# Its own queue, so that this example's worker consumes nothing but these tasks.
app = App(
    "priorities",
    broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    default_queue="priorities",
)


@app.task
async def step(label: str) -> float:
    """Pretend to work for a moment; return when (time.time()) the work started."""
    started = time.time()
    await asyncio.sleep(0.2)
    return started
