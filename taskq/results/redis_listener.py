"""The Redis store's listening session: the pub/sub subscription of the store's channel.

Run by a :class:`taskq.results.listener.Listener`, whose reader task alone calls a method of
the PubSub object (subscribe, get_message, ping, aclose): redis-py's connection is not safe
for two readers, and a reconnect handshake reads the socket too, so a second coroutine on it
fails with "readuntil() called while another coroutine is already waiting for incoming data".
An idle connection is checked with a PING: no reply to it counts as a lost connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .listener import Feed, Session, decode_published

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

IDLE = 5.0
"""Seconds without a message before the session PINGs; as long again without a reply: lost."""


def redis_session(pubsub: Callable[[], PubSub], channel: str) -> Session:
    """A session on a new PubSub object from ``pubsub`` (on a connection without redis-py
    retries: the listener decides when to reconnect) subscribed to ``channel``."""

    async def session(feed: Feed) -> None:
        connection = pubsub()
        try:
            await connection.subscribe(channel)
            pinged = False
            while True:
                message = await connection.get_message(timeout=IDLE)
                if message is None:
                    if pinged:
                        raise TimeoutError(f"no reply to PING within {IDLE} s")
                    await connection.ping()
                    pinged = True
                    continue
                pinged = False
                kind = message.get("type")
                if kind == "subscribe":
                    feed.confirmed()
                elif kind == "message":
                    state = decode_published(message["data"], channel)
                    if state is not None:
                        feed.published(state)
        finally:
            # aclose is untyped in redis-py 5 and typed from 6 on: call it untyped.
            close: Callable[[], Awaitable[None]] = connection.aclose
            with contextlib.suppress(Exception):
                await close()

    return session
