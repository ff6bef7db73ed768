"""One mandatory publish per message ID in flight on the aio-pika transport.

aiormq matches a ``basic.return`` to its publish by the message's ID alone: of two publishes
in flight with the same ID, the later one takes the return, whichever was returned. taskq's
message IDs are task IDs, which a producer may reuse, and a worker may publish two messages
with one ID at once (the reply of one delivery, the dead-letter copy of another). So a
mandatory publish whose ID is already in flight waits until that one is settled (the native
client matches a return by ID, exchange and routing key, and needs no wait).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class OnePerId:
    """Lets one holder per message ID at a time through :meth:`hold`."""

    def __init__(self) -> None:
        # ID -> the future its waiters wait on, None while nobody waits (the usual case: no
        # future is made for a publish whose ID is not shared).
        self._held: dict[str, asyncio.Future[None] | None] = {}

    @contextlib.asynccontextmanager
    async def hold(self, message_id: str) -> AsyncIterator[None]:
        """Wait until no other publish holds ``message_id``, then hold it while in the block."""
        held = self._held
        while message_id in held:
            released = held[message_id]
            if released is None:
                released = held[message_id] = asyncio.get_running_loop().create_future()
            await asyncio.shield(released)
        held[message_id] = None
        try:
            yield
        finally:
            released = held.pop(message_id)
            if released is not None:
                released.set_result(None)
