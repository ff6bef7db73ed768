"""Send an Order model and print the Receipt model that comes back.

Start the worker first (``taskq-worker tasks:app`` in this directory), then ``python send.py``.
"""

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

from tasks import Line, Order, app, checkout


async def main() -> None:
    order = Order(
        id=uuid.uuid4(),
        placed_at=dt.datetime.now(dt.UTC),
        lines=[
            Line(sku="mug", quantity=2, unit_price=Decimal("7.90")),
            Line(sku="teapot", quantity=1, unit_price=Decimal("24.50")),
        ],
    )
    async with app:
        handle = await checkout.delay(order, vat_rate=Decimal("0.20"))
        receipt = await handle.result(timeout=30)
    print(f"sent order {order.id} with {len(order.lines)} lines")
    print(f"got a {type(receipt).__name__}: {receipt!r}")
    assert receipt.order_id == order.id and isinstance(receipt.order_id, uuid.UUID)
    assert receipt.total == Decimal("48.36") and isinstance(receipt.total, Decimal)
    assert isinstance(receipt.processed_at, dt.datetime) and receipt.processed_at.tzinfo
    print(f"total {receipt.total} (a Decimal), ship by {receipt.ship_by.isoformat()} (a date)")


if __name__ == "__main__":
    asyncio.run(main())
