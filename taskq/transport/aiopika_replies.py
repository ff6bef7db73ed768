"""The AMQP result store's reply queue on aio-pika: it outlives a reconnect, and a queue that
expired while the connection was down is replaced at once, its waiters told.

aio-pika's robust channel would declare the queue again after a reconnect, under the same
name: one that expired meanwhile (its replies dropped by the broker) would come back empty
and its waiters would wait out their timeout. So the queue and its consumer are declared
without aio-pika's restore (``robust=False``), and :class:`ReplyQueue` restores them itself
from the connection's reconnect callback, as the native client does (see
``NativeTransport.consume_replies``): the queue is checked before it is declared again, and
if it is gone a queue with a new name replaces it and ``on_lost(new name)`` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from .aiopika_errors import LOST
from .interface import Reply

log = logging.getLogger("taskq.transport")


class ReplyQueue:
    """One reply queue consumed without acks on ``connection``; :meth:`start`, then
    :meth:`cancel` (see the module)."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        name: str,
        arguments: dict[str, Any],
        on_reply: Reply,
        on_lost: Callable[[str], None],
        *,
        new_name: Callable[[], str],
        timeout: float,
    ) -> None:
        self.connection = connection
        self.name = name
        self._arguments = arguments
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._new_name = new_name
        self._timeout = timeout
        self._channel: AbstractRobustChannel | None = None

    async def _message(self, message: AbstractIncomingMessage) -> None:
        self._on_reply(message.correlation_id, message.body, message.type)

    async def _consume(self) -> None:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.connection.channel()
        queue = await self._channel.declare_queue(
            self.name, durable=True, arguments=self._arguments, robust=False
        )
        await queue.consume(self._message, no_ack=True, robust=False)

    async def start(self) -> None:
        """Declare the queue, consume it, and restore both after every reconnect."""
        await self._consume()
        self.connection.reconnect_callbacks.add(self._reconnected)

    async def _reconnected(self, *_: Any) -> None:
        try:
            lost = not await self._exists()
            if lost:
                self.name = self._new_name()
            await self._consume()
        except Exception as exc:
            log.warning("reply queue %s not consumed again after a reconnect: %r", self.name, exc)
            return
        if lost:
            # Only now: a caller told at once may send again right away, and its reply must
            # find the new queue.
            self._on_lost(self.name)

    async def _exists(self) -> bool:
        channel = await self.connection.channel()
        try:
            await channel.declare_queue(self.name, passive=True, robust=False)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not channel.is_closed:
                await channel.close()
        return True

    async def cancel(self) -> None:
        """Stop consuming (and restoring) the queue; it is left to ``x-expires``."""
        self.connection.reconnect_callbacks.discard(self._reconnected)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*LOST):
                await asyncio.wait_for(channel.close(), self._timeout)
