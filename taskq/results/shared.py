"""A result store given as an object (``App(results=store)``), shared within one process.

An App opens a store for its client side (``async with app:``) and each Worker opens one for
itself; with a URL each gets a store of its own. A store object is one: each of them gets a
:class:`Lease` of it instead, and the store is opened by the first lease that opens and
closed by the last that closes.
"""

from __future__ import annotations

import asyncio

from .base import ResultStore, TaskState


class SharedStore:
    """Counts the open leases of one store object."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._open = 0
        self._lock = asyncio.Lock()

    def lease(self) -> Lease:
        """A new, unopened lease of the store."""
        return Lease(self)

    async def acquire(self) -> None:
        """Open the store unless a lease holds it open already."""
        async with self._lock:
            if self._open == 0:
                await self.store.open()
            self._open += 1

    async def release(self) -> None:
        """Close the store once no lease holds it open."""
        async with self._lock:
            self._open -= 1
            if self._open == 0:
                await self.store.close()


class Lease:
    """A ResultStore that forwards to a shared store; ``close`` releases it once."""

    def __init__(self, shared: SharedStore) -> None:
        self._shared = shared
        self._store = shared.store
        self.durable = shared.store.durable
        self._held = False

    def __repr__(self) -> str:
        return f"<Lease of {self._store!r}>"

    @property
    def store(self) -> ResultStore:
        """The shared store object (what optional capabilities, such as joins, are of)."""
        return self._store

    async def open(self) -> None:
        await self._shared.acquire()
        self._held = True

    async def close(self) -> None:
        if self._held:
            self._held = False
            await self._shared.release()

    def reply_to(self) -> str | None:
        return self._store.reply_to()

    def delivered(self, task_id: str) -> asyncio.Future[None] | None:
        """The wrapped store's ``delivered`` future (None if it has none: see ResultStore)."""
        delivered = getattr(self._store, "delivered", None)
        return delivered(task_id) if delivered is not None else None

    def reaches(self, reply_to: str | None) -> bool:
        reaches = getattr(self._store, "reaches", None)  # optional (see ResultStore)
        return reaches(reply_to) if reaches is not None else bool(reply_to) or self.durable

    def track(self, task_id: str, task_name: str) -> None:
        self._store.track(task_id, task_name)

    def forget(self, task_id: str) -> None:
        self._store.forget(task_id)

    async def reset(self, task_id: str) -> None:
        await self._store.reset(task_id)

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        await self._store.record(state, reply_to=reply_to)

    async def get(self, task_id: str) -> TaskState | None:
        return await self._store.get(task_id)

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        return await self._store.wait(task_id, timeout)
