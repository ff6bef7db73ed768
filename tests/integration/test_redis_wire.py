"""The Redis store's wire: a reply wakes its caller directly, and a silent Redis fails the
calls waiting on it after the timeout (one watchdog timer per connection, not one per write)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskq.results.redis_wire import RedisWire
from tests.tcp_proxy import TcpProxy


async def test_replies_come_back_in_order_on_the_live_connection() -> None:
    wire = RedisWire("redis://127.0.0.1:6379/0", timeout=5)
    try:
        assert not wire.send([["PING"]], [asyncio.get_running_loop().create_future()])
        assert await wire.execute([["PING"]]) == [b"PONG"]  # connects
        futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
        assert wire.send([["ECHO", "a"], ["ECHO", "b"], ["NOSUCHCOMMAND"]], futures)
        replies: list[Any] = [await asyncio.wait_for(f, 5) for f in futures]
        assert replies[:2] == [b"a", b"b"]
        assert isinstance(replies[2], Exception)  # an error reply is a value, not a failure
    finally:
        await wire.close()


async def test_a_silent_redis_fails_the_waiting_calls_after_the_timeout() -> None:
    proxy = TcpProxy(6379)
    await proxy.start()
    wire = RedisWire(proxy.redis_url(), timeout=0.5)
    try:
        assert await wire.execute([["PING"]]) == [b"PONG"]
        assert proxy.freeze() >= 1  # what is written now goes nowhere
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        assert wire.send([["PING"]], [first])
        assert wire.send([["PING"]], [second])
        for future in (first, second):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(future, 10)
        # The silent connection was dropped: the next call connects afresh.
        assert not wire.send([["PING"]], [loop.create_future()])
        assert await wire.execute([["PING"]]) == [b"PONG"]
    finally:
        await wire.close()
        await proxy.close()
