"""Pydantic models as task arguments and results, with datetime, Decimal and UUID fields.

Run a worker::

    cd examples/models
    taskq-worker tasks:app

then, in another shell, ``python send.py``.

Models travel as msgpack (datetime, Decimal and UUID as extension types, so nothing turns
into a float or a string on the way); the worker validates the arguments against the task's
signature, and the caller validates the result against its return annotation: ``await
handle.result()`` gives back a ``Receipt``, not a dict.
"""

import datetime as dt
import os
import uuid
from decimal import Decimal

from pydantic import BaseModel, Field

from taskq import App

app = App(
    "models",
    broker=os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/"),
    default_queue="models",
)


class Line(BaseModel):
    """One line of an order."""

    sku: str
    quantity: int = Field(gt=0)
    unit_price: Decimal


class Order(BaseModel):
    """What the customer asked for."""

    id: uuid.UUID
    placed_at: dt.datetime
    lines: list[Line]


class Receipt(BaseModel):
    """What the task returns."""

    order_id: uuid.UUID
    total: Decimal
    items: int
    ship_by: dt.date
    processed_at: dt.datetime


@app.task
async def checkout(order: Order, vat_rate: Decimal = Decimal("0.20")) -> Receipt:
    """Total an order (exact decimal arithmetic) and promise shipping within two days."""
    subtotal = sum((line.unit_price * line.quantity for line in order.lines), Decimal(0))
    return Receipt(
        order_id=order.id,
        total=(subtotal * (1 + vat_rate)).quantize(Decimal("0.01")),
        items=sum(line.quantity for line in order.lines),
        ship_by=order.placed_at.date() + dt.timedelta(days=2),
        processed_at=dt.datetime.now(dt.UTC),
    )
