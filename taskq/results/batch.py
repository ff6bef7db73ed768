"""Coalescing: the calls made for many keys in one event-loop turn become one batched call.

Thousands of callers that start waiting at once (a fan-out) would each make a round trip of
their own to the store; a :class:`Batcher` gathers the keys asked for until the loop is idle
for a moment, then runs one call for up to ``limit`` of them and hands each caller its value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

from .background import Background

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Batcher(Generic[K, V]):
    """Runs ``call(keys)`` for the keys asked for in the same loop turn.

    ``call`` gets distinct keys, at most ``limit``, and returns a value for each key it
    knows (a missing key gets ``None``). If it raises, every caller of that batch gets the
    exception. A caller that is cancelled does not cancel the batch.
    """

    def __init__(
        self, call: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]], limit: int = 1000
    ) -> None:
        self._call = call
        self._limit = limit
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._running = Background()

    async def __call__(self, key: K) -> V | None:
        """The value of ``key`` from the next batch."""
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._flush)
            future = self._pending[key] = loop.create_future()
        return await asyncio.shield(future)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        keys = list(pending)
        for start in range(0, len(keys), self._limit):
            chunk = {key: pending[key] for key in keys[start : start + self._limit]}
            self._running.spawn(self._run(chunk))

    async def _run(self, chunk: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            values = await self._call(list(chunk))
        except Exception as exc:
            for future in chunk.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # its callers may all be gone: no "never retrieved"
            return
        for key, future in chunk.items():
            if not future.done():
                future.set_result(values.get(key))
