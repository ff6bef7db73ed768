"""WorkflowHandle[R]: what sending a workflow returns; ``result()`` is its final value."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..exceptions import LifecycleError, ResultTimeout
from ..handle import TaskHandle

if TYPE_CHECKING:
    from ..cancel.client import Canceller, CancelResult

R = TypeVar("R")


class WorkflowHandle(Generic[R]):
    """A sent workflow. ``await h.result()`` is the result of its last step (a list, in
    order, for a group), validated against that task's return annotation.

    A step that fails for good fails the workflow: ``result()`` raises TaskFailed whose
    message names the step and its task ID; a step that is cancelled, TaskCancelled whose
    reason names it.
    """

    __slots__ = ("_canceller", "handles", "roots", "shape", "workflow_id")

    def __init__(
        self,
        shape: Any,
        handles: Mapping[str, TaskHandle[Any]],
        roots: Sequence[str] = (),
        canceller: Canceller | None = None,
        workflow_id: str | None = None,
    ) -> None:
        self.shape = shape
        """The task IDs whose results make the final value: an ID, or a list of shapes."""
        self.handles = dict(handles)
        """The handle of each final task, by task ID."""
        self.roots = tuple(roots)
        """The IDs of the workflow's first steps (a chain's first step, each member of a
        group it starts with)."""
        self._canceller = canceller
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

    async def cancel(
        self, reason: str = "", *, wait: bool = False, timeout: float = 30.0
    ) -> list[CancelResult]:
        """Cancel the whole workflow: each of its first steps (:attr:`roots`), and with them
        every step that has not finished, wherever it is (see docs/guide/cancellation.md);
        ``result()`` then raises TaskCancelled. One CancelResult per first step (a finished
        one says so; the steps after it are cancelled all the same). LifecycleError if the
        App it was sent through is closed; BrokerError if a cancel cannot be published."""
        if self._canceller is None:
            raise LifecycleError(f"{self!r} cannot cancel: it was not sent by an App")
        workflow_id = self.workflow_id
        if workflow_id is not None and workflow_id not in self.roots:
            # A group's ID: the steps sent after its members carry it as their root, and a
            # worker drops or stops a step whose root is cancelled. Not a task: no waiting.
            await self._canceller(workflow_id, reason, False, timeout)
        return [await self._canceller(root, reason, wait, timeout) for root in self.roots]
