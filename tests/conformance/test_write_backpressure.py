"""While the broker reads nothing from a connection, taskq holds a bounded amount for its socket
(issue 20, defect 4).

RabbitMQ stops reading a connection it blocked (a memory alarm); a TCP proxy that stops
reading what the client sends stands in for it here (the shared broker must not be put under
an alarm). Then the socket takes no more: confirmed publishes wait, and unconfirmed ones
(events, status notifications) are dropped and counted once ``UNCONFIRMED_LIMIT`` bytes wait,
never waited for. Before, 50,000 events went into an unbounded buffer (95 MB in 0.2 s) on the
native client, and aio-pika waited for the socket to drain, so ``emit`` hung until the broker
read again.
"""

from __future__ import annotations

import asyncio

from taskq import App, TaskHandle
from taskq.events import encode
from taskq.transport.connection import FLUSH_AT, UNCONFIRMED_LIMIT
from tests.support import broker_proxy, queue_messages

EVENTS = 50_000
BATCH = 500
SENDS = 100
BOUND = UNCONFIRMED_LIMIT + FLUSH_AT
"""What the publishing connection may hold: the limit, and a turn's writes past it."""


async def test_a_connection_the_broker_does_not_read_holds_a_bounded_buffer(
    prefix: str, topology_cleanup: set[str]
) -> None:
    async with broker_proxy() as proxy:
        app = App("pressure", broker=proxy.amqp_url(), prefix=prefix)

        @app.task
        async def add(x: int, y: int) -> int:
            return x + y

        async with app:
            transport = app.transport
            await app.send("add", 0, 0)  # declares the queue
            exchange = app.names.events
            await transport.declare_exchange(exchange, "topic")
            event = encode("task.started", {"task_id": prefix, "args": "x" * 1000})
            proxy.stall()
            sends = [asyncio.ensure_future(app.send("add", i, i)) for i in range(SENDS)]
            held, dropped = 0, 0
            for _ in range(EVENTS // BATCH):
                emitted = transport.emit(exchange, [("task.started", event)] * BATCH)
                dropped += await asyncio.wait_for(emitted, timeout=10)  # never waits for room
                held = max(held, transport.buffered_bytes)
                await asyncio.sleep(0)  # a loop turn: the writes go to the socket
            assert held <= BOUND, f"{held} bytes held for the socket"
            assert dropped > 0
            assert transport.dropped >= dropped
            proxy.unstall()
            handles = await asyncio.wait_for(asyncio.gather(*sends), timeout=30)
    # Every confirmed send is in its queue (at-least-once: a copy may be there too).
    sent = {handle.id for handle in handles if isinstance(handle, TaskHandle)}
    assert len(sent) == SENDS
    queued = await queue_messages(prefix, app.names.work_queue("default"))
    assert sent <= {message.message_id for message in queued}
