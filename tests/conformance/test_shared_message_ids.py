"""A return is matched to its own publish, even when another publish in flight has the
same message ID.

The message ID is the task ID, and a producer may reuse one: a worker then answers a reply
and dead-letters another delivery with that ID at about the same time. Found by the
producer fuzz test: the return of a reply to a queue that did not exist was taken for the
return of the dead-letter copy, which was reported unroutable, handed back and dead-lettered
a second time. Driven through the App's Transport, so that any transport can run it.
"""

from __future__ import annotations

import asyncio

from taskq import App, PublishError
from taskq.message import OutgoingMessage
from tests.support import queue_messages

ROUNDS = 20


async def test_only_the_unroutable_publish_of_a_shared_id_fails(app: App, prefix: str) -> None:
    async with app:
        await app.send("add", 0, 0)  # declares the queue
        transport, names = app.transport, app.names
        for n in range(ROUNDS):
            shared = f"{prefix}-shared-{n}"
            nowhere = OutgoingMessage(body=b"nowhere", message_id=shared)
            routed = OutgoingMessage(body=b"\x93\x90\x80\x80", message_id=shared)
            lost, kept = await asyncio.gather(
                transport.publish("", f"{prefix}.no-such-queue", nowhere),
                transport.publish(names.exchange, "default", routed),
                return_exceptions=True,
            )
            assert isinstance(lost, PublishError) and lost.unroutable, (n, lost)
            assert kept is None, (n, kept)
    queued = await queue_messages(prefix, names.work_queue("default"))
    assert sum(m.message_id.startswith(f"{prefix}-shared-") for m in queued) == ROUNDS
