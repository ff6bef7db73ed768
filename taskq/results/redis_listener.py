"""The Redis store's listening session: the pub/sub subscription of the store's channel.

Run by a :class:`taskq.results.listener.Listener`, whose reader task alone runs it. The
subscription has a connection of its own (:class:`taskq.results.redis_wire.RedisWire`, the
same handshake as the store's script calls), and each message is handed to the listener from
the connection's read callback, as soon as it is parsed: through redis-py's PubSub, a
notification cost a waiting caller a task wake-up and a parse in Python (a round trip's
outcome reached its caller about 100 µs later). An idle connection is checked with a PING:
no reply to it counts as a lost connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .listener import Feed, Session, decode_published
from .redis_wire import RedisWire

IDLE = 5.0
"""Seconds without a message before the session PINGs; as long again without a reply: lost."""


class _Pushes:
    """What the subscribed connection hands over: each reply, as it is parsed."""

    def __init__(self, wire: RedisWire, feed: Feed, channel: str) -> None:
        self.wire, self.feed, self.channel = wire, feed, channel
        self.heard = 0  # replies so far: the idle check's sign of life
        self.refused: Exception | None = None

    def __call__(self, reply: Any) -> None:
        self.heard += 1
        if isinstance(reply, Exception):  # e.g. an ACL without the channel's rights
            self.refused = reply
            self.wire.drop(ConnectionError(f"Redis refused the subscription: {reply}"))
        elif isinstance(reply, list) and reply and reply[0] == b"message" and len(reply) == 3:
            state = decode_published(reply[2], self.channel)
            if state is not None:
                self.feed.published(state)
        elif isinstance(reply, list) and reply and reply[0] == b"subscribe":
            self.feed.confirmed()


def redis_session(url: str, timeout: float, channel: str) -> Session:
    """A session on a new connection to ``url`` (``timeout``: to connect and log in)
    subscribed to ``channel``."""

    async def session(feed: Feed) -> None:
        wire = RedisWire(url, timeout)
        pushes = _Pushes(wire, feed, channel)
        try:
            protocol = await wire.subscribe(channel, pushes)
            seen, pinged = pushes.heard, False
            while True:
                await asyncio.wait([protocol.ended], timeout=IDLE)
                if pushes.refused is not None:
                    raise ConnectionError(f"Redis refused the subscription: {pushes.refused}")
                if protocol.ended.done():
                    raise ConnectionError(f"Redis pub/sub connection lost: {protocol.lost}")
                if pushes.heard != seen:
                    seen, pinged = pushes.heard, False
                elif pinged:
                    raise TimeoutError(f"no reply to PING within {IDLE} s")
                else:
                    wire.ping()
                    pinged = True
        finally:
            await wire.close()

    return session
