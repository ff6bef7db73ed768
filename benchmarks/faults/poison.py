"""Poison: five kinds of messages a worker must not run, published raw as a foreign producer
would. Each must be parked in ``{prefix}.q.default.dead`` with an ``x-taskq-reason`` header,
and the worker must go on serving."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import msgpack

from taskq.message import CONTENT_TYPE, H_REASON
from tests.support import eventually

from . import broker
from .report import Row
from .run import Run
from .sizes import Sizes

_GOOD_BODY = msgpack.packb([[0.0, 1], {}])

KINDS: dict[str, tuple[bytes, dict[str, Any]]] = {
    "garbage body": (b"\xc1\xc1 not msgpack", {"content_type": CONTENT_TYPE, "type": "work"}),
    # A body taskq could decode, under a foreign label: the label decides, it is never run.
    "foreign content type": (_GOOD_BODY, {"content_type": "application/python-pickle",
                                          "type": "work"}),
    "unknown task name": (_GOOD_BODY, {"content_type": CONTENT_TYPE, "type": "no_such_task"}),
    "wrong argument types": (msgpack.packb([["x", "y"], {}]),
                             {"content_type": CONTENT_TYPE, "type": "work"}),
    "missing task name": (_GOOD_BODY, {"content_type": CONTENT_TYPE}),
}  # fmt: skip


async def publish_raw(prefix: str) -> dict[str, str]:
    """Publish one message of each kind to the default work queue (confirmed, mandatory);
    return ``{message_id: kind}``."""
    ids = {}
    connection = await aio_pika.connect(broker.BROKER)
    try:
        # A message the broker returns (unroutable) raises: it never reached the work queue.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(prefix, ensure=False)
        for kind, (body, properties) in KINDS.items():
            message_id = str(uuid.uuid4())
            ids[message_id] = kind
            message = aio_pika.Message(
                body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                **properties,
            )  # fmt: skip
            await exchange.publish(message, "default", mandatory=True)
    finally:
        await connection.close()
    return ids


async def poison(sizes: Sizes) -> list[Row]:
    """Publish the five kinds, wait until the dead queue holds them, then send a normal task
    and await its result: the worker must still serve."""
    async with Run("poison messages", concurrency=4) as run:
        worker = await run.start_worker()
        poison_ids = await publish_raw(run.prefix)
        dead = run.client.names.dead_queue("default")

        async def parked() -> bool:
            ready, _ = (await broker.queue_counts(run.prefix)).get(dead, (0, 0))
            return ready >= len(poison_ids)

        try:
            await eventually(parked, timeout=30, interval=0.1, what=f"5 messages in {dead}")
        except AssertionError as exc:
            run.notes.append(str(exc))
        reasons = {m.message_id: broker.text(m.headers.get(H_REASON, "")) for m in
                   await broker.take_all(dead)}  # fmt: skip
        await run.send([(run.client.tasks["work"], 0.0, 7)])
        row = await run.count(settle_timeout=sizes.settle_timeout, grace=sizes.grace)
        return [_with_poison(row, run, poison_ids, reasons, serving=worker.process.poll() is None)]


def _with_poison(
    row: Row, run: Run, poison_ids: dict[str, str], reasons: dict[str | None, str], serving: bool
) -> Row:
    """``row`` (the normal task sent afterwards) with the poison added: a message not parked
    with a reason is lost, and one that ran is a failure."""
    unparked = [kind for message_id, kind in poison_ids.items() if not reasons.get(message_id)]
    ran = run.ledger.read().count_done(poison_ids)
    row.confirmed += len(poison_ids)
    row.lost += len(unparked)
    row.notes.append(
        f"{len(poison_ids) - len(unparked)} of {len(poison_ids)} parked with a reason ("
        + ", ".join(f"{poison_ids[i]}: {reasons.get(i) or 'NOT PARKED'}" for i in poison_ids)
        + f"); worker still serving: {'yes' if serving and row.executed else 'no'}"
    )
    if ran:
        row.failures.append(f"{ran} poison message(s) ran")
    if not serving or row.executed != 1:
        row.failures.append("the worker stopped serving")
    return row
