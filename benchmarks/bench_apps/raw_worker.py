"""The raw aio-pika ceiling for drain: consume a queue, count, ack each message one by one.

Usage: python -m benchmarks.bench_apps.raw_worker BROKER QUEUE PREFETCH [rpc]
With ``rpc``, reply to each message's reply_to (direct reply-to) before the ack.
"""

from __future__ import annotations

import asyncio
import sys

import aio_pika

from .counter import hit


async def main(broker: str, queue_name: str, prefetch: int, rpc: bool) -> None:
    connection = await aio_pika.connect(broker)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(queue_name, durable=True)
    exchange = channel.default_exchange

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        hit()
        if rpc and message.reply_to:
            reply = aio_pika.Message(message.body, correlation_id=message.correlation_id)
            await exchange.publish(reply, message.reply_to, mandatory=False)
        await message.ack()

    await queue.consume(on_message)
    print("consuming", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "rpc" in sys.argv[4:]))
