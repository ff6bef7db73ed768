"""MemoryResultStore: a result store in the running event loop's memory, durable there.

``App(results=MemoryResultStore())``: every store of one name on the running event loop
(the App's and its workers') sees the same states, as processes sharing a Redis do, so
``app.handle(task_id)`` works. A state is kept encoded (msgpack, as a real store keeps it):
a result comes back through the same decoding and validation. Nothing survives the loop.

(Not a ``results=`` URL scheme: ``memory://`` is the scheme users register for stores of
their own in docs/operations/result-stores.md.)
"""

from __future__ import annotations

import asyncio
import time

from ..exceptions import ResultTimeout, ResultUnavailable
from ..results.base import TaskState, TaskStatus
from .loopscope import of_running_loop


class States:
    """Encoded states by task ID (with when each expires), and a condition for waiters."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[bytes, float | None]] = {}
        self.changed = asyncio.Condition()


class MemoryResultStore:
    """A ResultStore over the States called ``name`` of the running event loop."""

    durable = True

    def __init__(self, name: str = "", *, result_ttl: float | None = None) -> None:
        self.name = name
        self.result_ttl = result_ttl
        self._states: States | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryResultStore memory://{self.name}>"

    @property
    def _space(self) -> States:
        if self._states is None:
            self._states = of_running_loop("results", self.name, States)
        return self._states

    async def open(self) -> None:
        self._closed = False
        _ = self._space

    async def close(self) -> None:
        self._closed = True
        async with self._space.changed:
            self._space.changed.notify_all()  # waiters of this store give up

    def reply_to(self) -> str | None:
        return None

    def track(self, task_id: str, task_name: str) -> None:
        if self._read(task_id) is None:  # sending an ID again never resets its state
            self._write(TaskState(task_id, TaskStatus.PENDING, task_name, attempt=0))

    def forget(self, task_id: str) -> None:
        """Nothing to drop: states stay until they expire (``result_ttl``)."""

    async def reset(self, task_id: str) -> None:
        self._space.states.pop(task_id, None)

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        if state.supersedes(self._read(state.task_id)):
            self._write(state)
            async with self._space.changed:
                self._space.changed.notify_all()

    async def get(self, task_id: str) -> TaskState | None:
        return self._read(task_id)

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        def finished() -> bool:
            state = self._read(task_id)
            return self._closed or (state is not None and state.status.terminal)

        space = self._space
        try:
            async with asyncio.timeout(timeout), space.changed:
                await space.changed.wait_for(finished)
        except TimeoutError:
            raise ResultTimeout(f"task {task_id} gave no outcome within {timeout} s") from None
        state = self._read(task_id)
        if state is None or not state.status.terminal:
            raise ResultUnavailable(f"the store closed while waiting for task {task_id}")
        return state

    def _write(self, state: TaskState) -> None:
        # encode() raises EncodeError for a result msgpack cannot carry, before anything is
        # stored (the worker then records a failure instead, as with any store).
        expires = None if self.result_ttl is None else time.monotonic() + self.result_ttl
        self._space.states[state.task_id] = (state.encode(), expires)

    def _read(self, task_id: str) -> TaskState | None:
        entry = self._space.states.get(task_id)
        if entry is None:
            return None
        data, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self._space.states[task_id]
            return None
        return TaskState.decode(data)
