"""``python -m benchmarks.enqueue_floor``: how fast the broker takes taskq's messages at all.

A bare publisher on taskq's own AMQP client sends N copies of the message ``noop.delay(i)``
sends (same properties and body size, a fresh ``message_id`` each), persistent, mandatory and
confirmed, to a durable priority queue through a direct exchange, as taskq does: nothing is
validated, encoded or tracked per message. ``--window`` confirms at most in flight (0: all,
as ``map()`` does). Its rate is the ceiling of ``map()`` and of a gather of ``delay()`` on this
broker; the RabbitMQ server's CPU per message is printed with it.

``python -m benchmarks --scenarios enqueue`` (with ``--systems raw``) measures it too, as the
row of system "floor", next to taskq's in every repetition.

Example: python -m benchmarks.enqueue_floor --tasks 20000 --window 0
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Sequence

import uvloop
from pamqp import commands

from taskq.transport.connection import Channel

from . import cpu, rt_floor
from . import harness as h
from .harness import Result

BODY = b"\x94\x02\x91\x01\x80\x81\xa1t\xcf\x00\x00\x01\xa2O3*@"  # noop(1) as taskq encodes it
PROPERTIES = {
    "content_type": "application/x-msgpack",
    "delivery_mode": 2,
    "reply_to": f"floor.reply.{uuid.uuid4().hex}",
    "type": "noop",
}
VARIANT = "floor: taskq's message, bare publisher, all confirms in flight"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.enqueue_floor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--window", type=int, default=0, help="confirms in flight at most (0: all)")
    p.add_argument("--repeat", type=int, default=3)
    return p.parse_args(argv)


async def _publish(channel: Channel, exchange: str, tasks: int, window: int) -> None:
    pending: list[asyncio.Future[None]] = []
    for _ in range(tasks):
        props = {**PROPERTIES, "message_id": str(uuid.uuid4())}
        confirm = channel.publish(exchange, "default", BODY, props, mandatory=True)
        assert confirm is not None
        pending.append(confirm)
        if window and len(pending) >= window:
            await asyncio.gather(*pending)
            pending = []
        elif not window and len(pending) % 256 == 0:
            await asyncio.sleep(0)  # written as it goes, as map() does
    await asyncio.gather(*pending)


async def measure(tasks: int, window: int, prefix: str) -> tuple[float, float | None]:
    """(seconds to publish ``tasks`` and have them confirmed, broker CPU µs per message)."""
    exchange, queue = f"{prefix}.floorx", f"{prefix}.floorq"
    connection, channel = await rt_floor.amqp("enqueue-floor")
    try:
        await channel.rpc(commands.Exchange.Declare(exchange=exchange, exchange_type="direct",
                                                    durable=True))  # fmt: skip
        await channel.rpc(commands.Queue.Declare(queue=queue, durable=True,
                                                 arguments={"x-max-priority": 10}))  # fmt: skip
        await channel.rpc(
            commands.Queue.Bind(queue=queue, exchange=exchange, routing_key="default")
        )
        await channel.confirm_mode()
        before = cpu.Sample([])  # the broker's alone
        started = time.perf_counter()
        await _publish(channel, exchange, tasks, window)
        seconds = time.perf_counter() - started
        after = cpu.Sample([])
        await channel.rpc(commands.Queue.Delete(queue=queue))
        await channel.rpc(commands.Exchange.Delete(exchange=exchange))
    finally:
        await connection.close()
    return seconds, cpu.per_task_us(before, after, tasks)["broker_cpu_us"]


async def rows(tasks: int, prefix: str) -> list[Result]:
    """The floor of enqueue as a row of ``python -m benchmarks`` (system "floor")."""
    h.progress(f"floor enqueue: {tasks} of taskq's messages, bare publisher")
    seconds, broker_us = await measure(tasks, 0, prefix)
    config = (
        "python -m benchmarks.enqueue_floor --window 0: noop's message (persistent, mandatory, "
        "confirmed) to a durable priority queue through a direct exchange, nothing per message"
    )
    return [h.rate("floor", "enqueue", VARIANT, config, tasks, seconds, "floor",
                   broker_cpu_us=broker_us)]  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    for n in range(args.repeat):
        seconds, broker_us = await measure(args.tasks, args.window, h.unique("ef"))
        print(f"repetition {n + 1}: {args.tasks / seconds:,.0f} messages/s, "
              f"broker {broker_us} µs/message")  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main(parse(sys.argv[1:])))
