"""A small shop whose tasks are tested with taskq's pytest plugin (see tests/test_tasks.py)."""

import os

from taskq import App, RetryPolicy, current

app = App("shop", broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"))

SHIPPED: list[str] = []
"""Orders shipped by this process: what a test checks for a task that returns nothing."""


class OutOfStock(Exception):
    """The shop cannot ship what was ordered."""


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def reserve(item: str, quantity: int) -> str:
    """Fails with OutOfStock past 3 items."""
    if quantity > 3:
        raise OutOfStock(f"only 3 {item} left, {quantity} ordered")
    return f"reserved {quantity} {item}"


@app.task(retry=RetryPolicy(max_attempts=3, delay=0.05, jitter=False, retry_on=(ConnectionError,)))
async def fetch_rate(currency: str) -> str:
    """The first attempt loses its connection; the retry succeeds and says which attempt it was."""
    attempt = current().attempt
    if attempt == 1:
        raise ConnectionError("the rates service hung up")
    return f"{currency}: 1.0 (attempt {attempt})"


@app.task
async def ship(order_id: str) -> None:
    """A task with a side effect and no result."""
    SHIPPED.append(order_id)
