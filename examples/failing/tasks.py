"""Failing tasks: what the caller learns when a task raises.

Run a worker::

    cd examples/failing
    taskq-worker tasks:app

then, in another shell, ``python send.py``.

A task that raises fails: the worker records FAILURE with the exception's type, message and
traceback as text, and keeps a copy of the message in the dead-letter queue
``taskq.q.failing.dead`` (reason ``max-attempts``). With a RetryPolicy the task is run again
first, for the exceptions the policy names.
"""

import os

from taskq import App, RetryPolicy

app = App(
    "failing",
    broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    default_queue="failing",
)


class OutOfStock(Exception):
    """The shop cannot ship what was ordered."""


def check_stock(item: str, quantity: int) -> None:
    if quantity > 3:
        raise OutOfStock(f"only 3 {item} left, {quantity} ordered")


@app.task
async def reserve(item: str, quantity: int) -> str:
    """Fails with OutOfStock (raised one call down, to show a traceback) when quantity > 3."""
    check_stock(item, quantity)
    return f"reserved {quantity} {item}"


@app.task(retry=RetryPolicy(max_attempts=3, delay=0.1, jitter=False, retry_on=(ConnectionError,)))
def fetch_price(item: str) -> float:
    """A plain def that keeps failing with a retryable error: runs 3 times, then fails."""
    raise ConnectionError(f"price service unreachable for {item}")
