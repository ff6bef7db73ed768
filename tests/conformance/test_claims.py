"""Claiming an exclusive queue (the slots of taskq.limits.concurrency): one connection at a
time holds it, a refusal leaves the transport usable, and closing the holder frees it."""

from __future__ import annotations

from taskq import App
from tests.support import BROKER


async def test_one_connection_at_a_time_holds_a_claimed_queue(prefix: str, app: App) -> None:
    slot = f"{prefix}.slot.t.k.0"
    other = App("other", broker=BROKER, prefix=prefix)
    async with app, other:
        assert await app.transport.claim(slot)
        assert await app.transport.claim(slot)  # the holder's own claim again: still its own
        for _ in range(3):  # each refusal closes a channel: the next claim opens another
            assert not await other.transport.claim(slot)
        await app.send("add", 1, 2)  # publishing is unaffected (confirmed)
        await app.transport.delete_queue(slot)
        assert await other.transport.claim(slot)
        assert not await app.transport.claim(slot)
    # ``other`` closed its connection: the broker deleted its exclusive queue with it.
    async with app:
        assert await app.transport.claim(slot)
        await app.transport.delete_queue(slot)
