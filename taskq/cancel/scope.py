"""One run of a task that a cancel can stop, and what the worker's executor asks of cancels.

How a run stops depends on where it runs:

- an ``async def`` task: its asyncio task is cancelled while it is inside the function, so
  its ``except CancelledError`` and ``finally`` blocks run;
- a plain ``def`` task in a thread: a thread cannot be interrupted, so the task checks
  ``taskq.current().cancelled`` and returns (or raises) early;
- a plain ``def`` task in the process pool: its process is ended (the pool starts another).

Whatever the function then returns or raises, a run cancelled before it ended is CANCELLED.

A workflow step also stops when its workflow's root is cancelled (:func:`root_of`): cancelling
the root cancels every member that has not finished, those sent later included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..message import Envelope


def root_of(envelope: Envelope) -> str | None:
    """The task whose cancel also cancels ``envelope``'s task: the root of the workflow it is a
    step of (its first step, when a client sent it), or None for a task outside a workflow
    (a task sent from inside another is not stopped with it)."""
    return envelope.root_id if envelope.workflow else None


class RunScope:
    """The cancel state of one run of one task (made by the executor for each run)."""

    __slots__ = ("_inside", "_interrupted", "_kill", "_task", "reason", "root_id", "task_id")

    def __init__(self, task_id: str, root_id: str | None = None) -> None:
        self.task_id = task_id
        self.root_id = root_id
        """The workflow root whose cancel stops this run too (see :func:`root_of`)."""
        self.reason: str | None = None
        """The cancel's reason once the run is cancelled (None: not cancelled)."""
        self._task: asyncio.Task[object] | None = None
        self._inside = False
        self._interrupted = False
        self._kill: Callable[[], None] | None = None

    @property
    def cancelled(self) -> bool:
        """Whether a cancel reached this run (read from any thread)."""
        return self.reason is not None

    def enter(self, interruptible: bool) -> None:
        """The function starts; ``interruptible``: it runs on this loop (an async task)."""
        self._task = asyncio.current_task() if interruptible else None
        self._inside = True

    def leave(self) -> None:
        """The function returned or raised: a cancel from now on interrupts nothing."""
        self._inside = False

    def on_kill(self, kill: Callable[[], None] | None) -> None:
        """How to stop the run from outside (the pool's kill of its process), or None."""
        self._kill = kill

    def cancel(self, reason: str) -> None:
        """Cancel the run (idempotent): interrupt it where it can be, else only mark it."""
        if self.reason is not None:
            return
        self.reason = reason
        if self._inside and self._task is not None:
            self._interrupted = True
            self._task.cancel(f"task {self.task_id} cancelled")
        if self._kill is not None:
            self._kill()

    def absorb(self) -> bool:
        """After the function ended: whether this run was cancelled. The asyncio cancel this
        scope delivered is taken back (``uncancel``), so the worker's own task runs on."""
        if self._interrupted and self._task is not None and self._task.cancelling():
            self._task.uncancel()
        self._interrupted = False
        return self.reason is not None


class Cancels(Protocol):
    """What the worker's executor asks of cancels (taskq.cancel.Revoker has it)."""

    def revoked(self, task_id: str, root_id: str | None = None) -> str | None:
        """The reason ``task_id`` (or its workflow's root ``root_id``) was cancelled if a
        cancel of it is in force, else None."""

    def running(self, scope: RunScope) -> None:
        """A run starts: a cancel of its task from now on goes to ``scope``."""

    def ended(self, scope: RunScope) -> None:
        """The run of ``scope`` ended."""
