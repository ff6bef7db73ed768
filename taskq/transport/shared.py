"""What every Transport implementation does the same way, written once.

:class:`SharedMethods` is a base class of the native, aio-pika and in-memory transports: the
batch publish (``publish_many``, over the implementation's own ``publish``), the bound
consumer that runs a task per message (``consume_bound``, over its own ``listen``), the
tasks it owns, and the count of unconfirmed messages dropped for want of room. Nothing here
wraps a single publish: ``publish_many`` gathers the implementation's ``publish`` coroutines
as they are (an extra coroutine per publish showed up as garbage-collector time).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import topology
from ..exceptions import BrokerError, PublishError
from ..message import OutgoingMessage
from .connection import RESOURCE_LOCKED
from .options import TransportOptions
from .wire import Delivery

log = logging.getLogger("taskq.transport")


def raise_unconfirmed(
    items: Sequence[tuple[str, str, OutgoingMessage]], results: Sequence[BaseException | None]
) -> None:
    """PublishError naming the messages of a batch whose result is an exception (none: return)."""
    failed = [
        (message.message_id, result)
        for (_, _, message), result in zip(items, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        ids = ", ".join(str(message_id) for message_id, _ in failed)
        raise PublishError(
            f"{len(failed)} of {len(items)} messages not confirmed: {ids} "
            f"(first error: {failed[0][1]})"
        ) from failed[0][1]


class SharedMethods:
    """The Transport methods that are the same for every implementation (see the module)."""

    holds_delays = True

    def __init__(self) -> None:
        self.dropped = 0
        """Unconfirmed messages (events, status notifications) dropped because the publishing
        connection's socket took no more (see :meth:`count_dropped`)."""
        self._dropping = 0  # dropped since the last unconfirmed publish that went out
        self._handlers: set[asyncio.Task[None]] = set()

    # Each implementation's own (see taskq.transport.interface.Transport for their contract).
    publish: Callable[..., Awaitable[None]]
    listen: Callable[..., Awaitable[None]]
    # ... and what they hold: the names declared so far (once per transport), and the lock
    # that keeps two declarations of the same names from running at once.
    names: topology.Names
    options: TransportOptions
    _declared: set[str]
    _declare_lock: asyncio.Lock

    async def declare_delay_path(self, delay_ms: int) -> None:
        """Declare what a message delayed ``delay_ms`` passes through (idempotent): the delay
        exchanges, and the TTL queues of the delay's non-zero digits with their bindings.

        On first use, not at start: most delays take a few of the 135 queues, and an App
        that never delays declares none (each queue is a process of the broker's, about 5 ms
        to create, and a worker's start took 0.7-1 s declaring all of them)."""
        queues = _path_queue_keys(self.names, delay_ms, topology.DELAY)
        if all(key in self._declared for key in queues):
            return
        async with self._declare_lock:
            if all(key in self._declared for key in queues):  # declared while this one waited
                return
            plan = topology.delay_declarations(self.names, delay_ms, self.options.any_quorum)
            plan = plan.without(self._declared)
            if plan.keys():
                await self._declare_delays(plan)
                self._declared.update(plan.keys())

    async def _declare_delays(self, plan: topology.DelayDeclarations) -> None:
        """Declare ``plan``'s exchanges, queues and bindings, in that order (each
        implementation's own; errors mapped to taskq's)."""
        raise NotImplementedError

    _declare_exclusive: Callable[[str], Awaitable[None]]
    """Declare a queue exclusive to the publishing connection (BrokerError with reply code
    405 if another connection holds it)."""

    async def claim(self, queue_name: str) -> bool:
        """Declare ``queue_name`` exclusive to the publishing connection: False if another
        connection holds it (405 RESOURCE_LOCKED; see taskq.limits.concurrency)."""
        try:
            await self._declare_exclusive(queue_name)
        except BrokerError as exc:
            if exc.reply_code == RESOURCE_LOCKED:
                return False
            raise
        return True

    async def publish_many(self, items: Sequence[tuple[str, str, OutgoingMessage]]) -> None:
        """Publish ``(exchange, routing_key, message)`` items with pipelined confirms.

        Everything is published first, then every confirm awaited, so a batch costs about one
        round trip instead of one per message. All or error: if any publish fails, the others
        still finish, then PublishError names the message IDs that were not confirmed (the
        rest were; resend only the ones named).
        """
        raise_unconfirmed(items, await self.publish_each(items))

    async def publish_each(
        self, items: Sequence[tuple[str, str, OutgoingMessage]]
    ) -> list[BaseException | None]:
        """Publish ``(exchange, routing_key, message)`` items with pipelined confirms; return
        what became of each, in order: None once confirmed, else its error (what ``publish``
        raises). Nothing is raised: the caller decides (see :func:`raise_unconfirmed`)."""
        return await asyncio.gather(
            *(self.publish(exchange, key, message) for exchange, key, message in items),
            return_exceptions=True,
        )

    async def consume_bound(
        self,
        queue_name: str,
        exchange: str,
        routing_key: str,
        on_message: Callable[[str | None, bytes], Awaitable[None]],
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Declare an exclusive queue bound to ``exchange`` with ``routing_key`` (and the queue
        ``arguments``, e.g. a length limit) and consume it without acks, calling
        ``on_message(type, body)`` in a task of its own per message (cancelled by
        :meth:`cancel_handlers`). The queue goes with the connection; after a reconnect it is
        declared and bound again."""

        def on_delivery(delivery: Delivery) -> None:
            task = asyncio.ensure_future(on_message(delivery.type, delivery.body))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

        await self.listen(queue_name, exchange, routing_key, on_delivery, arguments=arguments)

    def cancel_handlers(self) -> None:
        """Cancel the tasks :meth:`consume_bound` started that are still running."""
        for task in list(self._handlers):
            task.cancel()

    def count_dropped(self, dropped: int, connection: str, limit: int) -> None:
        """Count ``dropped`` unconfirmed messages that found no room on ``connection`` (where
        ``limit`` bytes already waited); log when dropping starts and when it ends (not each
        one: it happens in bursts of thousands)."""
        if dropped:
            if not self._dropping:
                log.warning("RabbitMQ reads nothing from %s and %d bytes wait: dropping events "
                            "and status notifications until it reads again",
                            connection, limit)  # fmt: skip
            self.dropped += dropped
            self._dropping += dropped
        elif self._dropping:
            log.warning(
                "%d event(s) and status notification(s) dropped while RabbitMQ read nothing "
                "from %s",
                self._dropping,
                connection,
            )
            self._dropping = 0


@functools.lru_cache(maxsize=4096)
def _path_queue_keys(
    names: topology.Names, delay_ms: int, scheme: topology.DelayScheme
) -> tuple[str, ...]:
    """The :func:`topology.declared_key` of each TTL queue a delay of ``delay_ms`` waits in.
    Cached, and bounded: a burst of delayed sends asks for a few paths thousands of times
    (working each out was a sixth of a send), and a process that runs for months asks for a
    new one every hold window."""
    return tuple(topology.declared_key("queue", q) for q in scheme.path(names, delay_ms).queues)
