"""The Redis store's hot path: script calls pipelined on one connection of its own.

Through redis-py, a script call cost the worker about as much CPU and latency as the round
trip itself (command packing argument by argument, a pooled connection per call). Here every
call of an event-loop turn goes out in one write on one connection, RESP2 encoded by hand,
and the replies (in order, as Redis answers a connection's commands in order) are parsed by
hiredis. A lost or silent connection fails the calls in flight with ConnectionError or
TimeoutError (both OSError: the store turns them into ResultUnavailable), and the next call
connects again. Error replies come back as redis-py's exceptions (NoScriptError for a
script a restarted Redis forgot), so callers handle them as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from ..redact import redact_url

Command = Sequence[str | bytes | int]


def encode(command: Command) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _error(reply: Exception) -> Exception:
    text = str(reply)
    return NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_push: Callable[[Any], None] | None = None
        """Set by RedisWire.subscribe: every reply from then on goes here, as it is read."""
        # The last reply of each write through RedisWire.send, with its deadline, oldest first.
        self.deadlines: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if self.on_push is not None:
                self.on_push(reply)
                continue
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_result(_error(reply))  # a reply, not a failure of the connection
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("Redis closed the connection")
        self.fail(ConnectionError(f"Redis connection lost: {self.lost}"))
        if not self.ended.done():
            self.ended.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.deadlines.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
                future.exception()  # its caller may be gone: no "never retrieved"


class RedisWire:
    """Pipelined commands on one Redis connection, opened on first use (see the module doc)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// URL: {redact_url(url)}")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._user = urllib.parse.unquote(parts.username) if parts.username else None
        self._password = urllib.parse.unquote(parts.password) if parts.password else None
        self._db = int(parts.path.lstrip("/") or 0) if parts.path.lstrip("/").isdigit() else 0
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order (an error reply is returned
        as an exception instance, not raised). OSError if the connection fails or Redis does
        not answer within the timeout."""
        protocol = await self._connection()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        protocol.waiting.extend(futures)
        assert protocol.transport is not None
        protocol.transport.write(b"".join(encode(command) for command in commands))
        try:
            async with asyncio.timeout(self._timeout):
                return [await future for future in futures]
        except TimeoutError:
            self._drop(protocol, TimeoutError(f"Redis did not answer within {self._timeout} s"))
            raise TimeoutError(f"Redis did not answer within {self._timeout} s") from None

    def send(self, commands: Sequence[Command], futures: Sequence[asyncio.Future[Any]]) -> bool:
        """Write ``commands`` in one write if the connection is up (False: it is not; call
        :meth:`execute`, which connects): each reply goes straight to its future in
        ``futures``, an error reply as an exception instance. No task and no wait here: a
        reply wakes its caller directly. If Redis does not answer within the timeout, the
        connection is dropped and every waiting future fails with TimeoutError."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.transport is None:
            return False
        protocol.waiting.extend(futures)
        protocol.transport.write(b"".join(encode(command) for command in commands))
        loop = asyncio.get_running_loop()
        deadlines = protocol.deadlines
        while deadlines and deadlines[0][1].done():  # answered in order: only those in flight stay
            deadlines.popleft()
        deadlines.append((loop.time() + self._timeout, futures[-1]))
        if protocol.watchdog is None:
            protocol.watchdog = loop.call_later(self._timeout, self._watch, protocol)
        return True

    async def subscribe(self, channel: str, on_push: Callable[[Any], None]) -> _Protocol:
        """Connect (the handshake included) and subscribe to ``channel``: from then on every
        reply, the subscription's confirmation and each message (RESP2 arrays such as
        ``[b"message", channel, data]``) is handed to ``on_push`` as soon as it is read, in
        the protocol's callback: no task and no wake-up between Redis and the listener. The
        connection's ``ended`` future resolves when it is lost; :meth:`ping` checks an idle
        one."""
        protocol = await self._connection()
        protocol.on_push = on_push
        assert protocol.transport is not None
        protocol.transport.write(encode(["SUBSCRIBE", channel]))
        return protocol

    def drop(self, exc: BaseException) -> None:
        """Abort the connection: calls in flight fail with ``exc``; ``ended`` resolves."""
        if self._protocol is not None:
            self._drop(self._protocol, exc)

    def ping(self) -> None:
        """Write a PING on the subscribed connection (its reply is a push: ``[b"pong", b""]``)."""
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None and protocol.lost is None:
            protocol.transport.write(encode(["PING"]))

    def _watch(self, protocol: _Protocol) -> None:
        """One timer per connection, at the deadline of the oldest write still unanswered
        (a timer per write would pile up thousands at a high rate)."""
        protocol.watchdog = None
        deadlines = protocol.deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()
        if not deadlines or protocol.lost is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = deadlines[0][0]
        if loop.time() >= deadline:
            self._drop(protocol, TimeoutError(f"Redis did not answer within {self._timeout} s"))
        else:
            protocol.watchdog = loop.call_at(deadline, self._watch, protocol)

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._connect()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            _, protocol = await loop.create_connection(
                _Protocol, self._host, self._port, ssl=self._ssl
            )
        handshake: list[Command] = []
        if self._password is not None:
            auth: Command = ["AUTH", self._password]
            handshake.append(["AUTH", self._user, self._password] if self._user else auth)
        if self._db:
            handshake.append(["SELECT", self._db])
        if handshake:
            self._protocol = protocol
            for reply in await self.execute(handshake):
                if isinstance(reply, Exception):
                    await self.close()
                    raise ConnectionError(f"Redis refused the connection: {reply}")
        return protocol

    def _drop(self, protocol: _Protocol, exc: BaseException) -> None:
        protocol.lost = exc
        protocol.fail(exc)
        if protocol.transport is not None:
            protocol.transport.abort()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.lost = protocol.lost or ConnectionError("closed")
            protocol.fail(ConnectionError("the result store was closed"))
            protocol.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.sleep(0)  # let the transport finish closing
