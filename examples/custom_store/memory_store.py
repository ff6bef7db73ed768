"""A minimal custom result store: task states in this process's memory.

For tests and single-process apps (a worker and its callers in one process). Every instance
made with the same ``Memory`` sees the same states, as processes sharing a database would;
``taskq.testing.contract`` runs the result-store contract against it (see
docs/operations/result-stores.md).
"""

from __future__ import annotations

import asyncio
import time

from taskq import ResultTimeout, ResultUnavailable, TaskState, TaskStatus


class Memory:
    """The storage: encoded states by task ID, and when each expires."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[bytes, float | None]] = {}
        self.changed = asyncio.Condition()


class MemoryStore:
    """A ResultStore over a ``Memory`` (a new one if none is given)."""

    durable = True  # any instance over the same Memory can look a task up by ID

    def __init__(self, memory: Memory | None = None, *, result_ttl: float | None = None) -> None:
        self.memory = memory or Memory()
        self.result_ttl = result_ttl
        self.closed = False

    async def open(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        async with self.memory.changed:
            self.memory.changed.notify_all()  # waiters of this store give up

    def reply_to(self) -> str | None:
        return None  # results do not travel over AMQP

    def track(self, task_id: str, task_name: str) -> None:
        if self._read(task_id) is None:  # sending an ID again never resets its state
            self._write(TaskState(task_id, TaskStatus.PENDING, task_name, attempt=0))

    def forget(self, task_id: str) -> None:
        """Nothing to drop: states stay until they expire."""

    async def reset(self, task_id: str) -> None:
        self.memory.states.pop(task_id, None)

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        if state.supersedes(self._read(state.task_id)):  # a status never moves backwards
            self._write(state)
            async with self.memory.changed:
                self.memory.changed.notify_all()

    async def get(self, task_id: str) -> TaskState | None:
        return self._read(task_id)

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        def finished() -> bool:
            state = self._read(task_id)
            return self.closed or (state is not None and state.status.terminal)

        try:
            async with asyncio.timeout(timeout), self.memory.changed:
                await self.memory.changed.wait_for(finished)
        except TimeoutError:
            raise ResultTimeout(f"task {task_id} gave no outcome within {timeout} s") from None
        state = self._read(task_id)
        if state is None or not state.status.terminal:
            raise ResultUnavailable(f"the store closed while waiting for task {task_id}")
        return state

    def _write(self, state: TaskState) -> None:
        # encode() raises EncodeError for a result msgpack cannot carry, before anything is
        # stored (the worker then records a failure instead).
        expires = None if self.result_ttl is None else time.monotonic() + self.result_ttl
        self.memory.states[state.task_id] = (state.encode(), expires)

    def _read(self, task_id: str) -> TaskState | None:
        entry = self.memory.states.get(task_id)
        if entry is None:
            return None
        data, expires = entry
        if expires is not None and expires <= time.monotonic():
            del self.memory.states[task_id]
            return None
        return TaskState.decode(data)
