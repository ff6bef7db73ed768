"""Recording task states for a worker: the one place that writes to the result store.

A record returns only once the store has the state; while the store is unreachable
(ResultUnavailable) it retries with backoff, and the delivery stays unacked meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .exceptions import ResultUnavailable
from .message import Envelope
from .results.base import ErrorInfo, ResultStore, TaskState, TaskStatus

log = logging.getLogger("taskq.worker")
T = TypeVar("T")

FIRST_RETRY = 0.1
MAX_RETRY = 5.0


class Recorder:
    """Records the states of one worker's tasks in its result store."""

    def __init__(self, store: ResultStore, worker: str) -> None:
        self.store = store
        self.worker = worker
        reaches: Callable[[str | None], bool] | None = getattr(store, "reaches", None)
        self._reaches = reaches if reaches is not None else self._reaches_by_kind

    def _reaches_by_kind(self, reply_to: str | None) -> bool:
        return reply_to is not None or self.store.durable

    def wanted(self, envelope: Envelope) -> bool:
        """Whether anybody can ever ask for this task's state (not when sent with
        ignore_result; the AMQP store only has the sender, and a sender that gave no reply
        address, or whose reply queue is gone, does not listen). Nothing is built, timed or
        written for a task nobody can ask about."""
        return not envelope.ignore_result and self._reaches(envelope.reply_to)

    async def record(
        self,
        envelope: Envelope,
        status: TaskStatus,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
        progress: tuple[float, str | None] | None = None,
    ) -> None:
        """Record a state of ``envelope``'s task (retrying while the store is unreachable).

        Raises EncodeError, before anything is stored, if ``result`` cannot be serialised.
        """
        if not self.wanted(envelope):
            return
        state = TaskState(
            task_id=envelope.task_id,
            status=status,
            task_name=envelope.task_name,
            attempt=envelope.attempt,
            result=result,
            error=error,
            worker=self.worker,
            progress=progress[0] if progress else None,
            progress_message=progress[1] if progress else None,
        )
        store = self.store
        await self.until_stored(lambda: store.record(state, reply_to=envelope.reply_to))

    async def succeeded_before(self, envelope: Envelope) -> bool:
        """Whether a durable store already shows SUCCESS for this task ID (never, for a task
        sent with ignore_result or a store that only answers the sender)."""
        store = self.store
        if not store.durable or envelope.ignore_result:
            return False
        state = await self.until_stored(lambda: store.get(envelope.task_id))
        return state is not None and state.status is TaskStatus.SUCCESS

    async def until_stored(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a store call; while the store is unreachable (ResultUnavailable), retry with
        backoff. A stop cancels the wait (the delivery then goes back to its queue)."""
        delay = FIRST_RETRY
        while True:
            try:
                return await call()
            except ResultUnavailable as exc:
                log.warning("result store unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
