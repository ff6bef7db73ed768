"""TaskHandle[R]: what ``delay()`` returns; ask it for status and the typed result."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .exceptions import TaskFailed
from .results.base import ResultStore, TaskState, TaskStatus

R = TypeVar("R")


class TaskHandle(Generic[R]):
    """A sent task. ``await h.result()`` gives its return value, validated against the task's
    return annotation (a pydantic model comes back as the model)."""

    __slots__ = ("__weakref__", "_store", "_validate", "id", "task_name")

    def __init__(
        self,
        task_id: str,
        task_name: str,
        store: ResultStore,
        validate: Callable[[Any], R] | None = None,
        *,
        owned: bool = True,
    ) -> None:
        self.id = task_id
        self.task_name = task_name
        self._store = store
        self._validate = validate
        if owned:
            # The store keeps states only while a handle can still ask for them.
            weakref.finalize(self, store.forget, task_id)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_name} {self.id}>"

    async def info(self) -> TaskState:
        """The latest known state (status, attempt, error, progress, worker)."""
        state = await self._store.get(self.id)
        return (
            state
            if state is not None
            else TaskState(self.id, TaskStatus.PENDING, self.task_name, 0)
        )

    async def status(self) -> TaskStatus:
        """PENDING, STARTED, RETRYING, SUCCESS or FAILURE."""
        return (await self.info()).status

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the outcome and return the result.

        Raises TaskFailed (with the remote type, message and traceback as text) if the task
        failed, and ResultTimeout (a TimeoutError) if no outcome came within ``timeout`` seconds.
        """
        state = await self._store.wait(self.id, timeout)
        if state.status is TaskStatus.FAILURE:
            error = state.error
            raise TaskFailed(
                self.id,
                error.type if error else "Unknown",
                error.message if error else "",
                error.traceback if error else "",
            )
        value = state.result
        return self._validate(value) if self._validate is not None else value
