"""Work queues consumed through aio-pika's robust channels, restored one by one.

Why this exists: after a reconnect aio-pika restores every channel of the connection, each
with its queues and consumers; a queue that is gone (deleted, or a classic queue whose node
is down) fails its channel's restore with 404, and aio-pika then closes and reopens the whole
connection, every 5 s, until the queue is back: every other consumer of the worker stops
meanwhile. The native client retries such a queue alone (``link.py``: "not consuming ...;
trying again"). :class:`RetriedAlone` does the same on aio-pika: its restore first probes
the queue on a throwaway channel; if it is missing, it logs, leaves the channel (and the
connection) alone, and probes again every :data:`RETRY_SECONDS` until it can consume again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiormq
from aio_pika.robust_queue import RobustQueue

from .aiopika_errors import LOST

log = logging.getLogger("taskq.transport")

RETRY_SECONDS = 2.0
"""How often a work queue that could not be consumed after a reconnect is probed again."""


class RetriedAlone(RobustQueue):
    """A robust queue whose restore never fails its channel or connection (see the module)."""

    _retry: asyncio.Task[None] | None = None

    async def restore(self, channel: Any = None) -> None:
        """Consume again after a reconnect, or, if the queue is missing, later, alone."""
        why = await self._missing()
        if why is None:
            await self._consume_again()
            return
        log.warning("not consuming %s (%s); trying again in %.0f s", self.name, why, RETRY_SECONDS)
        if self._retry is None or self._retry.done():
            self._retry = asyncio.ensure_future(self._again())

    async def _again(self) -> None:
        while not self.channel.is_closed:
            await asyncio.sleep(RETRY_SECONDS)
            with contextlib.suppress(*LOST):  # the connection went again: its restore retries
                if await self._missing() is None:
                    await self._consume_again()
                    log.warning("consuming %s again", self.name)
                    return

    async def _missing(self) -> str | None:
        """Why the queue cannot be consumed now (a passive declare on a channel of its own,
        which a 404 closes), or None if it can."""
        underlay = await self.channel.get_underlay_channel()
        probe = await underlay.connection.channel(publisher_confirms=False)
        try:
            await probe.queue_declare(queue=self.name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            return str(exc)
        finally:
            if not probe.is_closed:
                await probe.close()
        return None

    async def _consume_again(self) -> None:
        await self.declare()
        underlay = await self.channel.get_underlay_channel()
        running = underlay.consumers  # type: ignore[attr-defined]  # aiormq.Channel has it
        for tag, kwargs in tuple(self._consumers.items()):
            if tag not in running:  # aio-pika's own recovery may have been first
                await self.consume(consumer_tag=tag, **kwargs)
