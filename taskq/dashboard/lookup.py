"""Where the dashboard finds a task its history never saw (issue 26; Flower users have asked
for it since 2016, mher/flower #542): in the result store, which a durable store (Redis,
PostgreSQL) keeps for ``result_ttl`` whoever sent or ran the task, and in the dead-letter
queues, which keep a parked message until someone replays or purges it.

A found task has the shape of a history record with ``source`` saying where it came from,
and no timeline (nothing of its events is known). A lookup costs a store read and, for each
work queue with dead letters, reading them (``limit`` at most): each answer is kept for
:data:`REMEMBERED` seconds, since a task page asks again with every refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from .. import dlq
from ..app import App
from ..exceptions import TaskqError
from ..redact import value_repr
from ..results.base import TaskState

log = logging.getLogger("taskq.dashboard")

REMEMBERED = 5.0  # seconds a lookup's answer (found or not) is reused for the same task
STORE_TIMEOUT = 3.0  # seconds the result store may take to answer (an outage: not found)


class Lookup:
    """Finds tasks in the result store and the dead-letter queues (see the module)."""

    def __init__(self, app: App, dead_lock: asyncio.Lock, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._dead_lock = dead_lock  # the dashboard's: one reader of dead letters at a time
        self._answers: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def find(self, task_id: str, dead_queues: Iterable[str]) -> dict[str, Any] | None:
        """``task_id`` as the result store or a dead-letter queue of ``dead_queues`` (short
        names) knows it, or None."""
        now = time.monotonic()
        remembered = self._answers.get(task_id)
        if remembered is not None and now - remembered[0] < REMEMBERED:
            return remembered[1]
        found = await self._stored(task_id) or await self._dead(task_id, sorted(dead_queues))
        self._answers = {k: v for k, v in self._answers.items() if now - v[0] < REMEMBERED}
        self._answers[task_id] = (now, found)
        return found

    async def _stored(self, task_id: str) -> dict[str, Any] | None:
        store = self.app.store
        try:
            state = await asyncio.wait_for(store.get(task_id), STORE_TIMEOUT)
        except (TaskqError, TimeoutError) as exc:
            log.warning("looking up task %r in the result store failed: %s", task_id, exc)
            return None
        return None if state is None else stored_record(state, type(store).__name__)

    async def _dead(self, task_id: str, queues: list[str]) -> dict[str, Any] | None:
        for queue in queues:
            async with self._dead_lock:
                try:
                    letters = await dlq.list_dead(self.app.transport, queue, limit=self.limit)
                except TaskqError as exc:
                    log.warning("looking up task %r in %s's dead letters: %s", task_id, queue, exc)
                    continue
            for letter in letters:
                if letter.task_id == task_id:
                    return dead_record(letter, queue)
        return None


def stored_record(state: TaskState, store: str) -> dict[str, Any]:
    """What a result store's record of a task tells, as the task page shows a task."""
    error = state.error
    return {
        "task_id": state.task_id, "name": state.task_name, "queue": None,
        "state": state.status.value, "attempt": state.attempt, "worker": state.worker,
        "result": value_repr(state.result) if error is None else None,
        "error": error.type if error else None,
        "error_message": error.message if error else None,
        "traceback": error.traceback if error else None,
        "updated_at": state.updated_at, "args": None, "timeline": [],
        "source": f"result store ({store})",
    }  # fmt: skip


def dead_record(letter: dlq.DeadMessage, queue: str) -> dict[str, Any]:
    """What a dead letter tells of its task, as the task page shows a task."""
    return {
        "task_id": letter.task_id, "name": letter.task_name or None, "queue": queue,
        "state": "DEAD", "reason": letter.reason, "attempt": letter.attempts,
        "worker": letter.worker, "result": None,
        "error": letter.error_type or None, "error_message": letter.error_message or None,
        "traceback": letter.traceback or None,
        "updated_at": letter.dead_at.timestamp() if letter.dead_at else None, "args": None,
        "timeline": [], "source": f"dead-letter queue of {queue!r}",
    }  # fmt: skip
