"""The running task's context, reachable from inside the task with ``taskq.current()``."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import LifecycleError, TaskCancelled

if TYPE_CHECKING:
    from .cancel.scope import RunScope


@dataclasses.dataclass(frozen=True, slots=True)
class TaskContext:
    """Facts about the task running now, and a way to report its progress.

    ``taskq.current()`` returns it inside a task (``taskq.current_or_none()`` anywhere);
    worker hooks get it as ``run.context``, and ``before_send`` hooks get the sending task's
    as ``send.context``. ``root_id`` is the ID of the first task of the chain this one belongs
    to (its own ID when nothing sent it from inside a task). ``scheduled_for`` is the tick a
    periodic firing is for (an aware UTC datetime), None for a task sent any other way.
    ``partition`` is the partition of ``queue`` the task came from (None: the queue is not
    partitioned). ``headers`` are the headers the message was sent with (what the sender's
    ``before_send`` hooks added: e.g. a trace context). ``cancelled`` tells whether the task
    was cancelled while it runs.
    """

    task_id: str
    task_name: str
    queue: str
    attempt: int
    root_id: str | None
    _report: Callable[[float, str | None], Awaitable[None]] = dataclasses.field(repr=False)
    scheduled_for: dt.datetime | None = None
    partition: int | None = None
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    _scope: RunScope | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """Whether the task was cancelled while it runs (see docs/guide/cancellation.md).

        An ``async def`` task is interrupted (CancelledError) and a process pool task's
        process is ended; a plain ``def`` task in a thread cannot be interrupted: it checks
        this now and then and returns (or calls :meth:`raise_if_cancelled`). Whatever it then
        returns, the task is recorded CANCELLED. Safe to read from the task's thread."""
        return self._scope is not None and self._scope.cancelled

    def raise_if_cancelled(self) -> None:
        """Raise TaskCancelled if the task was cancelled (a cooperative stop point)."""
        scope = self._scope
        if scope is not None and scope.reason is not None:
            raise TaskCancelled(self.task_id, scope.reason)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0.0 to 1.0, and an optional message), visible through the handle."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("progress fraction must be between 0.0 and 1.0")
        await self._report(fraction, message)


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "taskq_current", default=None
)


def current() -> TaskContext:
    """The context of the task running now; LifecycleError outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise LifecycleError("taskq.current() is only available inside a running task")
    return ctx


def current_or_none() -> TaskContext | None:
    """The context of the task running now, or None outside a task (e.g. when a task's
    function is called directly, or from a hook that runs outside one)."""
    return _current.get()


def set_current(ctx: TaskContext | None) -> contextvars.Token[TaskContext | None]:
    """Make ``ctx`` the current task context (the worker does this around each run)."""
    return _current.set(ctx)


def reset_current(token: contextvars.Token[TaskContext | None]) -> None:
    """Undo the ``set_current`` that returned ``token``."""
    _current.reset(token)
