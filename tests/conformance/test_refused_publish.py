"""A publish the broker refuses fails alone (issue 20, defect 3).

RabbitMQ refuses a publish by closing its channel (404: no such exchange; 406: a body over
``max_message_size``), and every publish pipelined behind it on that channel loses its confirm
too. Only the refused one may fail: the others are sent again on a new channel and confirmed.
Driven through the App and its Transport's publish, so that any transport can run it.
"""

from __future__ import annotations

import asyncio

from taskq import App, PublishError, TaskHandle
from taskq.message import OutgoingMessage
from tests.support import queue_messages

VALID = 15


async def test_one_refused_publish_fails_alone_and_its_neighbours_are_confirmed(
    app: App, prefix: str
) -> None:
    async with app:
        await app.send("add", 0, 0)  # declares the queue: the sends below only publish
        refused = OutgoingMessage(body=b"nowhere", message_id=f"{prefix}-refused")
        results = await asyncio.gather(
            app.transport.publish(f"{prefix}.no-such-exchange", "default", refused),
            *(app.send("add", i, i) for i in range(VALID)),
            return_exceptions=True,
        )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1, errors
    assert isinstance(results[0], PublishError)
    assert refused.message_id in str(results[0])
    assert "no exchange" in str(results[0])
    # Every valid send is in the queue (at-least-once: a resend may add a copy, never lose one).
    sent = {handle.id for handle in results[1:] if isinstance(handle, TaskHandle)}
    assert len(sent) == VALID
    queued = await queue_messages(prefix, app.names.work_queue("default"))
    assert sent <= {message.message_id for message in queued}
