"""A blocking facade for code without an event loop (Flask, Django, scripts): ``app.sync``.

::

    with app.sync as client:                      # or: app.sync ... app.sync.close()
        h = client.send(add, 4, 6)                # SyncHandle[int]
        print(h.result(timeout=10))               # 10
        print(client.handle(task_id).status())    # look up by ID (durable store)

The facade runs its own event loop in a daemon thread, started (and the App opened on it) by
the first call. Every call hands a coroutine to that loop with
``asyncio.run_coroutine_threadsafe``, so it is safe from many threads at once. ``close()``
closes the App, cancels calls still waiting (they raise LifecycleError) and stops the thread;
a closed client cannot be reused, but ``app.sync`` then gives a new one.

The App belongs to the facade's loop while it is open: do not also use ``async with app:`` in
the same process (use a second App object for async code).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .cancel.client import DEFAULT_WAIT, CancelResult
from .exceptions import LifecycleError
from .handle import TaskHandle, block_on
from .results.base import TaskState, TaskStatus
from .task import Task, TaskCall

if TYPE_CHECKING:
    from .app import App

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_CREATE_LOCK = threading.Lock()


class SyncHandle(Generic[R]):
    """A sent task, for blocking code: ``result()``, ``status()``, ``info()`` block."""

    __slots__ = ("handle",)

    def __init__(self, handle: TaskHandle[R], client: SyncClient) -> None:
        handle.run_sync_calls_with(client.run)
        self.handle = handle
        """The underlying async handle (its ``result_sync()`` also works)."""

    def __repr__(self) -> str:
        return f"<SyncHandle {self.handle.task_name} {self.handle.id}>"

    @property
    def id(self) -> str:
        """The task ID."""
        return self.handle.id

    @property
    def task_name(self) -> str:
        """The task name ("" if looked up by ID without one)."""
        return self.handle.task_name

    def result(self, timeout: float | None = None) -> R:
        """Block until the outcome; TaskFailed, TaskCancelled, ResultTimeout as
        ``TaskHandle.result``."""
        return self.handle.result_sync(timeout)

    def cancel(
        self, reason: str = "", *, wait: bool = False, timeout: float = DEFAULT_WAIT
    ) -> CancelResult:
        """Cancel the task (see ``TaskHandle.cancel``)."""
        return self.handle.cancel_sync(reason, wait=wait, timeout=timeout)

    def status(self) -> TaskStatus:
        """PENDING, STARTED, RETRYING, SUCCESS or FAILURE."""
        return self.handle.status_sync()

    def info(self) -> TaskState:
        """The latest known state (status, attempt, error, progress, timestamps)."""
        return self.handle.info_sync()


class SyncClient:
    """Blocking access to an App from any thread; see the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._calls: set[asyncio.Task[Any]] = set()  # touched only on the loop thread

    @classmethod
    def of(cls, app: App, current: SyncClient | None) -> SyncClient:
        """``current`` unless it is None or closed, else a new client (what ``app.sync`` uses)."""
        with _CREATE_LOCK:
            if current is None or current.closed:
                return cls(app)
            return current

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._loop else "idle"
        return f"<SyncClient {self.app.name!r} {state}>"

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    # -- the public calls ------------------------------------------------------------------

    @overload
    def send(
        self, task: Task[P, R] | TaskCall[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncHandle[R]: ...
    @overload
    def send(self, task: str, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]: ...

    def send(self, task: Any, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]:
        """Send a task (a Task, a TaskCall from ``.options(...)``, or a name) and return its
        handle once the broker confirmed it. Raises what ``delay`` raises, and LifecycleError
        after ``close()``."""
        call = self.app.named(task) if isinstance(task, str) else task

        async def sending() -> TaskHandle[Any]:
            return await call.delay(*args, **kwargs)

        return SyncHandle(self.run(sending()), self)

    def handle(self, task_id: str, task_name: str = "") -> SyncHandle[Any]:
        """A handle for a task sent earlier, by ID (needs a durable store; see App.handle)."""

        async def make() -> TaskHandle[Any]:
            return self.app.handle(task_id, task_name)

        return SyncHandle(self.run(make()), self)

    def cancel(
        self, task_id: str, *, reason: str = "", wait: bool = False, timeout: float = DEFAULT_WAIT
    ) -> CancelResult:
        """Cancel task ``task_id`` (see ``App.cancel``)."""
        return self.run(self.app.cancel(task_id, reason=reason, wait=wait, timeout=timeout))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the facade's loop (opening it if needed) and block for its value."""
        try:
            loop = self._ensure_open()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(self._tracked(coro), loop)
        return block_on(future, loop, "the sync client was closed while this call waited")

    def close(self) -> None:
        """Close the App, cancel waiting calls, stop the loop thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.close)
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    # -- the loop thread -------------------------------------------------------------------

    def _ensure_open(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise LifecycleError(f"{self!r} is closed; use app.sync for a new one")
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name=f"taskq-sync:{self.app.name}", daemon=True
            )
            thread.start()
            try:
                opening = self.app.open(connection_name=f"taskq-sync:{self.app.name}")
                asyncio.run_coroutine_threadsafe(opening, loop).result()
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                raise
            self._loop, self._thread = loop, thread
            atexit.register(self.close)
            return loop

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        """On the loop: run a caller's coroutine as a task that ``close()`` can cancel."""
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            return await coro
        finally:
            self._calls.discard(task)

    async def _shutdown(self) -> None:
        """On the loop: cancel the calls still running, then close the App."""
        calls = list(self._calls)
        # Cancel until they stop: Python 3.11's asyncio.wait_for (used inside redis-py's
        # connect) can swallow one cancellation, which left a caller waiting out its timeout.
        while pending := [task for task in calls if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.1)
        await asyncio.gather(*calls, return_exceptions=True)
        await self.app.close()
