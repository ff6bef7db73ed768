"""Publishers waiting for a socket that takes no more (taskq.transport.connection): they get
their turns in order, a batch at a time, not all at once when the socket drains (a burst
would then sit whole in this process's buffer after being written)."""

from __future__ import annotations

import asyncio

import pytest

from taskq.transport.connection import TURN_BATCH, ChannelClosed, Connection


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_turns_go_a_batch_at_a_time_in_order() -> None:
    connection = Connection("test")
    assert await connection.writable() is False  # the socket takes writes: no turn needed
    connection.pause_writing()
    order: list[int] = []

    async def publisher(n: int) -> None:
        assert await connection.writable() is True
        order.append(n)

    waiting = [asyncio.ensure_future(publisher(n)) for n in range(TURN_BATCH * 2 + 5)]
    await settle()
    assert order == []  # paused: nobody writes
    connection.resume_writing()
    await settle()
    assert order == list(range(TURN_BATCH))  # one batch, the first in line
    for _ in range(TURN_BATCH):
        connection.wrote()
    await settle()
    assert order == list(range(TURN_BATCH * 2))
    connection.pause_writing()  # the socket is full again: the rest wait, however many wrote
    for _ in range(TURN_BATCH):
        connection.wrote()
    await settle()
    assert len(order) == TURN_BATCH * 2
    connection.resume_writing()
    await settle()
    assert order == list(range(TURN_BATCH * 2 + 5))
    await asyncio.gather(*waiting)


async def test_a_cancelled_turn_is_passed_on_and_a_lost_connection_wakes_everyone() -> None:
    connection = Connection("test")
    connection.pause_writing()
    first = asyncio.ensure_future(connection.writable())
    second = asyncio.ensure_future(connection.writable())
    await settle()
    first.cancel()
    connection.resume_writing()
    await settle()
    assert second.done() and second.result() is True
    connection.wrote()
    connection.pause_writing()
    stuck = [asyncio.ensure_future(connection.writable()) for _ in range(3)]
    await settle()
    connection.connection_lost(None)
    await settle()
    for waiter in stuck:
        with pytest.raises(ChannelClosed):
            waiter.result()
