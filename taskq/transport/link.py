"""A Connection kept alive: reconnects after a loss and re-subscribes what was consumed.

After a loss the link opens a new connection, retrying every second; with several broker
URLs (a cluster), it tries the node after the one it lost first. It then replays every
active subscription on a new channel, each after its ``prepare`` step (a declare of what
the connection took with it, such as an exclusive queue), and only then counts as up again.
Deliveries received on the lost connection can no longer be acked (their channel is gone);
the broker redelivers them, which is what at-least-once needs. Callers that need the
connection (publishers, declarations) wait for it with :meth:`Link.connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .connection import CHANNEL_MAX, Channel, ChannelClosed, Connection, OnDelivery, connect_any
from .endpoints import Endpoint
from .wire import acker_of

log = logging.getLogger("taskq.transport")

RECONNECT_INTERVAL = 1.0
MAX_RESUBSCRIBE_PAUSE = 5.0
"""The longest pause between two tries to consume a queue again while its connection is up
(it was deleted, or its node is down): how long a worker may stay idle once it is back."""
Prepare = Callable[[Channel], Awaitable[str | None]]
"""Run on a subscription's new channel before it consumes; may return another queue name to
consume from now on."""


class _Subscription:
    __slots__ = ("acks", "active", "arguments", "channel", "label", "on_delivery", "prefetch",
                 "prepare", "queue")  # fmt: skip

    def __init__(
        self,
        queue: str,
        label: str,
        on_delivery: OnDelivery,
        prefetch: int,
        acks: bool,
        prepare: Prepare | None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.arguments = arguments
        self.queue = queue
        self.label = label
        self.on_delivery = on_delivery
        self.prefetch = prefetch
        self.acks = acks
        self.prepare = prepare
        self.channel: Channel | None = None
        self.active = True


class Link:
    """One AMQP connection to one of ``endpoints`` that comes back after a loss (see the
    module doc)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        name: str,
        connect_timeout: float,
        channel_max: int = CHANNEL_MAX,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.channel_max = channel_max
        self._at = 0  # index of the endpoint of the current (or last) connection
        self.name = name
        self._timeout = connect_timeout
        self._connection: Connection | None = None
        self._up = asyncio.Event()
        self._subscriptions: list[_Subscription] = []
        self._keeper: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._connection is not None and not self._connection.closed.done()

    @property
    def current(self) -> Connection | None:
        """The connection now, or None between a loss and the reconnect."""
        connection = self._connection
        return connection if connection is not None and not connection.closed.done() else None

    async def start(self) -> None:
        """Connect (BrokerUnavailable if the broker cannot be reached now)."""
        self._connection, self._at = await connect_any(
            self.endpoints, self.name, self._timeout, channel_max=self.channel_max
        )
        self._up.set()
        self._keeper = asyncio.ensure_future(self._keep())

    async def connection(self, timeout: float | None = None) -> Connection:
        """The live connection, waiting up to ``timeout`` seconds for a reconnect
        (ChannelClosed if it is still down, or the link is closed)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._closing:
                raise ChannelClosed(f"{self.name} is closed")
            connection = self._connection
            if connection is not None and not connection.closed.done():
                return connection
            self._up.clear()  # lost, and the keeper may not have noticed yet
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise ChannelClosed(f"{self.name} is still reconnecting")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._up.wait()

    async def subscribe(
        self,
        queue: str,
        label: str,
        on_delivery: OnDelivery,
        *,
        prefetch: int = 0,
        acks: bool = True,
        prepare: Prepare | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> Callable[[], Awaitable[None]]:
        """Consume ``queue`` (full name) on a channel of its own, now and after every
        reconnect (with the consumer ``arguments``); deliveries carry ``label`` as their
        queue. Returns a cancel function."""
        subscription = _Subscription(queue, label, on_delivery, prefetch, acks, prepare, arguments)
        await self._open(await self.connection(self._timeout), subscription)
        self._subscriptions.append(subscription)

        async def cancel() -> None:
            subscription.active = False
            if subscription.channel is not None:
                await subscription.channel.cancel()

        return cancel

    async def _open(self, connection: Connection, subscription: _Subscription) -> None:
        channel = await connection.channel()
        try:
            if subscription.prepare is not None:
                subscription.queue = await subscription.prepare(channel) or subscription.queue
            await channel.consume(
                subscription.queue, subscription.label, subscription.on_delivery,
                prefetch=subscription.prefetch, acks=subscription.acks,
                arguments=subscription.arguments,
            )  # fmt: skip
        except BaseException:
            await channel.close()
            raise
        subscription.channel = channel
        self._spawn(self._watch(connection, subscription, channel))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(
        self, connection: Connection, subscription: _Subscription, channel: Channel
    ) -> None:
        """Consume again when a consumer stops while its connection stays up (the broker
        cancelled it, or closed its channel on an error): a worker must not go on looking
        alive while it no longer consumes a queue. A lost connection is left to _keep."""
        reason = await asyncio.shield(channel.consumer_stopped)
        self._spawn(_retire(channel))
        await self._retry(connection, subscription, channel, reason)

    async def _retry(
        self, connection: Connection, subscription: _Subscription, stopped: Channel | None,
        reason: object,
    ) -> None:  # fmt: skip
        """Open ``subscription`` again on ``connection``, with a growing pause, until it
        consumes, the connection is lost, or someone else replaced channel ``stopped``."""
        pause = RECONNECT_INTERVAL

        def still_needed() -> bool:
            return (subscription.active and not self._closing and subscription.channel is stopped
                    and not connection.closed.done())  # fmt: skip

        while still_needed():
            log.warning("not consuming %s (%s); trying again in %.0f s",
                        subscription.queue, reason, pause)  # fmt: skip
            await asyncio.sleep(pause)
            if not still_needed():
                return
            try:
                await self._open(connection, subscription)
            except Exception as exc:
                reason, pause = exc, min(pause * 2, MAX_RESUBSCRIBE_PAUSE)
            else:
                log.info("consuming %s again", subscription.queue)
                return

    async def _keep(self) -> None:
        while not self._closing:
            connection = self._connection
            if connection is not None:
                # shield: cancelling this task must not cancel the connection's own future
                failure = await asyncio.shield(connection.closed)
                if self._closing:
                    return
                log.warning("connection %s lost (%s); reconnecting", self.name, failure)
            self._up.clear()
            self._connection = None
            await asyncio.sleep(RECONNECT_INTERVAL)
            self._connection = await self._reconnect()
            if self._connection is not None:
                self._up.set()

    async def _reconnect(self) -> Connection | None:
        """A new connection with every active subscription on it, or None (try again)."""
        try:
            connection, self._at = await connect_any(
                self.endpoints, self.name, self._timeout, self._at + 1, self.channel_max
            )
        except Exception as exc:
            log.warning("reconnecting %s failed (%s); retrying", self.name, exc)
            return None
        self._subscriptions = [s for s in self._subscriptions if s.active]
        for subscription in self._subscriptions:
            try:
                await self._open(connection, subscription)
            except Exception as exc:
                if connection.closed.done():
                    log.warning("re-subscribing on %s failed (%s); retrying", self.name, exc)
                    return None
                # One queue that cannot be consumed now (e.g. a classic queue whose node is
                # down) must not keep the others from being consumed: it is retried alone.
                self._spawn(self._retry(connection, subscription, subscription.channel, exc))
        log.info("connection %s is back", self.name)
        return connection

    async def close(self) -> None:
        """Close the connection and stop reconnecting (idempotent)."""
        self._closing = True
        self._up.set()  # wake waiters: they find the link closed
        for task in [self._keeper, *self._watchers]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


async def _retire(channel: Channel) -> None:
    """Close a channel whose consumer the broker cancelled, once every delivery it brought
    is acked or rejected (running tasks still ack on it): the subscription goes on on a new
    channel, and one channel left open per cancel would add up on a long-lived connection."""
    if channel.is_closed:
        return
    settled = asyncio.ensure_future(acker_of(channel).settled())
    either: set[asyncio.Future[Any]] = {settled, channel.closing}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        settled.cancel()
    await channel.close()


class ChannelSlot:
    """A channel of a Link kept open for one use (publishing, declaring): reopened on demand
    after it or its connection closed."""

    def __init__(self, link: Link, setup: Prepare | None = None) -> None:
        self._link = link
        self._setup = setup
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout: float | None = None) -> Channel:
        """The open channel (opening one, waiting up to ``timeout`` for the connection)."""
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._lock:
            channel = self._channel
            if channel is None or channel.is_closed:
                connection = await self._link.connection(timeout)
                channel = await connection.channel()
                if self._setup is not None:
                    await self._setup(channel)  # its return (a queue name) means nothing here
                self._channel = channel
            return channel
