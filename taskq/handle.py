"""TaskHandle[R]: what ``delay()`` returns; ask it for status and the typed result."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .context import current_or_none
from .exceptions import (
    LifecycleError,
    ResultUnavailable,
    TaskCancelled,
    TaskFailed,
    WaitRefused,
)
from .results.base import ResultStore, TaskState, TaskStatus

if TYPE_CHECKING:
    from .cancel.client import Canceller, CancelResult

R = TypeVar("R")
T = TypeVar("T")


class TaskHandle(Generic[R]):
    """A sent task. ``await h.result()`` gives its return value, validated against the task's
    return annotation (a pydantic model comes back as the model)."""

    __slots__ = (
        "__weakref__", "_canceller", "_ignored", "_loop", "_owned", "_runner", "_store",
        "_validate", "id", "task_name",
    )  # fmt: skip

    def __init__(
        self,
        task_id: str,
        task_name: str,
        store: ResultStore,
        validate: Callable[[Any], R] | None = None,
        *,
        owned: bool = True,
        ignored: bool = False,
        canceller: Canceller | None = None,
    ) -> None:
        self._canceller = canceller
        self.id = task_id
        self.task_name = task_name
        self._store = store
        self._validate = validate
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._runner: Callable[[Coroutine[Any, Any, Any]], Any] | None = None
        """Set by the sync facade: runs the *_sync calls so that its close() can cancel them."""
        self._owned = owned and not ignored
        self._ignored = ignored

    def __del__(self) -> None:
        # The store keeps a sent task's state only while a handle can still ask for it.
        # (__del__ rather than weakref.finalize: it costs a tenth as much on the send path.)
        if self._owned:
            self._store.forget(self.id)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_name} {self.id}>"

    def _check_recorded(self) -> None:
        if self._ignored:
            raise ResultUnavailable(
                f"task {self.id} was sent with ignore_result: no state or result is recorded"
            )

    async def info(self) -> TaskState:
        """The latest known state (status, attempt, error, progress, worker).

        ResultUnavailable if the task was sent with ``ignore_result``, or if the store cannot
        know it (with the AMQP store, a task another process sent)."""
        self._check_recorded()
        state = await self._store.get(self.id)
        return (
            state
            if state is not None
            else TaskState(self.id, TaskStatus.PENDING, self.task_name, 0)
        )

    async def status(self) -> TaskStatus:
        """PENDING, STARTED, RETRYING, SUCCESS, FAILURE or CANCELLED; raises what ``info()``
        raises."""
        return (await self.info()).status

    async def result(self, timeout: float | None = None, *, allow_in_task: bool = False) -> R:
        """Wait for the outcome and return the result.

        Raises TaskFailed (with the remote type, message and traceback as text) if the task
        failed, TaskCancelled (with the cancel's reason) if it was cancelled, ResultTimeout (a
        TimeoutError) if no outcome came within ``timeout`` seconds, and ResultUnavailable if
        the task was sent with ``ignore_result``. Inside a running task it raises
        WaitRefused at once (a parent waiting for its child can deadlock the workers: use a
        chord), unless ``allow_in_task``.
        """
        self._check_recorded()
        if not allow_in_task:
            self._refuse_in_task()
        state = await self._store.wait(self.id, timeout)
        if state.status is TaskStatus.FAILURE:
            error = state.error
            raise TaskFailed(
                self.id,
                error.type if error else "Unknown",
                error.message if error else "",
                error.traceback if error else "",
            )
        if state.status is TaskStatus.CANCELLED:
            raise TaskCancelled(self.id, state.error.message if state.error else "")
        value = state.result
        return self._validate(value) if self._validate is not None else value

    def _refuse_in_task(self) -> None:
        running = current_or_none()
        if running is not None:
            raise WaitRefused(
                f"task {running.task_name}[{running.task_id}] awaits the result of task "
                f"{self.task_name}[{self.id}]: a task that waits for another can take the "
                "worker slot that one needs, a deadlock. Send a workflow instead, e.g. "
                "chord(group(children), callback.s()) or chain(parent.s(...), next.s()) "
                "(see docs/guide/workflows.md), or pass allow_in_task=True if the awaited "
                "task runs on workers that never run this one"
            )

    async def cancel(
        self, reason: str = "", *, wait: bool = False, timeout: float = 30.0
    ) -> CancelResult:
        """Cancel the task wherever it is (see docs/guide/cancellation.md): a queued or
        delayed task never runs, a running one is stopped; it is recorded CANCELLED with
        ``reason`` and ``result()`` raises TaskCancelled. With ``wait``, return once a running
        task has stopped (at most ``timeout`` seconds). Cancelling a finished task changes
        nothing (the result says which terminal status it has). LifecycleError if the App
        this handle came from is closed; BrokerError if the cancel cannot be published."""
        if self._canceller is None:
            raise LifecycleError(f"{self!r} cannot cancel: it was not made by an App")
        return await self._canceller(self.id, reason, wait, timeout)

    def cancel_sync(
        self, reason: str = "", *, wait: bool = False, timeout: float = 30.0
    ) -> CancelResult:
        """``cancel()`` for a thread without an event loop (see ``result_sync``)."""
        return self._run_sync(self.cancel(reason, wait=wait, timeout=timeout))

    def run_sync_calls_with(self, runner: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        """Run this handle's ``*_sync`` calls with ``runner`` (the sync facade's, so that its
        close() can cancel them) instead of on the handle's own loop."""
        self._runner = runner

    def result_sync(self, timeout: float | None = None, *, allow_in_task: bool = False) -> R:
        """``result()`` for a thread without an event loop (e.g. a handle from ``app.sync``).

        Runs the wait on the loop this handle belongs to, which must be running in another
        thread. Raises LifecycleError when called on that loop's own thread (it would block
        the loop it waits on) or when that loop is closed, plus what ``result()`` raises.
        """
        if not allow_in_task:
            self._refuse_in_task()
        return self._run_sync(self.result(timeout, allow_in_task=True))

    def status_sync(self) -> TaskStatus:
        """``status()`` for a thread without an event loop (see ``result_sync``)."""
        return self._run_sync(self.status())

    def info_sync(self) -> TaskState:
        """``info()`` for a thread without an event loop (see ``result_sync``)."""
        return self._run_sync(self.info())

    def _run_sync(self, call: Coroutine[Any, Any, T]) -> T:
        if self._runner is not None:
            value: T = self._runner(call)
            return value
        loop = self._loop
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        problem = None
        if loop is None or loop.is_closed() or not loop.is_running():
            problem = f"the event loop of {self!r} is not running (was its app closed?)"
        elif here is loop:
            problem = "a *_sync() call on the handle's own event loop would block it: use await"
        if problem is not None:
            call.close()
            raise LifecycleError(problem)
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(call, loop)
        return block_on(future, loop, f"the app was closed while waiting on {self!r}")


def block_on(
    future: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop, closed_message: str
) -> T:
    """Block the calling thread for ``future``, which runs on ``loop`` in another thread.

    If the loop stops before the call even started (a close racing with the call), the future
    would never settle: the wait wakes twice a second to notice, and raises LifecycleError.
    """
    while True:
        try:
            return future.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            # Since Python 3.11 this is the builtin TimeoutError, which the call itself may
            # raise (ResultTimeout): that one is the answer, not a reason to wait again.
            if future.done():
                raise
            if loop.is_closed() or not loop.is_running():
                future.cancel()
                raise LifecycleError(closed_message) from None
        except concurrent.futures.CancelledError:
            raise LifecycleError(closed_message) from None
