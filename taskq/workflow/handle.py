"""WorkflowHandle[R]: what sending a workflow returns; ``result()`` is its final value."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from ..exceptions import ResultTimeout
from ..handle import TaskHandle

R = TypeVar("R")


class WorkflowHandle(Generic[R]):
    """A sent workflow. ``await h.result()`` is the result of its last step (a list, in
    order, for a group), validated against that task's return annotation.

    A step that fails for good fails the workflow: ``result()`` raises TaskFailed whose
    message names the step and its task ID.
    """

    __slots__ = ("handles", "shape", "workflow_id")

    def __init__(
        self, shape: Any, handles: Mapping[str, TaskHandle[Any]], workflow_id: str | None = None
    ) -> None:
        self.shape = shape
        """The task IDs whose results make the final value: an ID, or a list of shapes."""
        self.handles = dict(handles)
        """The handle of each final task, by task ID."""
        self.workflow_id = workflow_id
        """The root ID its steps carry (their ``root_id`` in events, ``taskq inspect`` and
        the dashboard's ``/workflows/ID`` page): its first task's ID, or its group's; for a
        workflow sent from inside a task, that task's root."""

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.shape!r}>"

    @property
    def id(self) -> str:
        """The ID of the (first) final task: a chain's last step, a chord's callback."""
        shape = self.shape
        while not isinstance(shape, str):
            shape = shape[0]
        return shape

    async def result(self, timeout: float | None = None, *, allow_in_task: bool = False) -> R:
        """Wait for the final value. Raises TaskFailed if a step failed for good,
        ResultTimeout past ``timeout`` seconds (what TaskHandle.result raises, otherwise)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        value: R = await self._resolve(self.shape, deadline, allow_in_task)
        return value

    async def _resolve(self, shape: Any, deadline: float | None, allowed: bool) -> Any:
        if not isinstance(shape, str):
            return [await self._resolve(part, deadline, allowed) for part in shape]
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ResultTimeout(f"workflow {self.id}: no result within the timeout")
        return await self.handles[shape].result(left, allow_in_task=allowed)
