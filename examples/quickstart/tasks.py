"""The classic first task: add(4, 6) -> 10."""

import os

from taskq import App

app = App("quickstart", broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
def multiply(x: int, y: int) -> int:
    """A plain def: runs in the worker's thread pool."""
    return x * y
