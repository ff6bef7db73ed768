"""Background tasks a store owns: started without being awaited, cancelled when it closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any


class Background:
    """The running tasks of one owner (a task is dropped from here once it is done)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` as a task of this owner."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Cancel every task still running and wait until they ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class InFlight:
    """Counts the calls under way on a client, so that closing the client waits for them.

    redis-py 8 leaves open the connection of a call that was still connecting when its pool
    was disconnected (the call finishes on it and hands it back to a closed pool). A store
    therefore refuses new calls once closing, and disconnects its pool after the last call.
    """

    def __init__(self, closed_error: Callable[[], Exception]) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._closed_error = closed_error

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Around one call; raises ``closed_error()`` once :meth:`drain` has begun."""
        if self._closing:
            raise self._closed_error()
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Refuse new calls, and wait (``timeout`` at most) until the running ones ended."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
