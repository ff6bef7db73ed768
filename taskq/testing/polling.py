"""Waiting with a deadline: how a test waits for something that happens elsewhere (a
condition, a task's outcome), failing with what it saw last."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..exceptions import ResultTimeout
from ..handle import TaskHandle
from ..results.base import TaskState, TaskStatus
from ..sync import SyncHandle

T = TypeVar("T")
R = TypeVar("R")


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what} (last: {value!r})"
            )
        await asyncio.sleep(interval)


async def outcome(handle: TaskHandle[R], timeout: float = 10.0) -> R:
    """Wait up to ``timeout`` seconds for the task of ``handle`` to finish; return its result.

    Raises TaskFailed if the task failed, as ``handle.result()`` does, and AssertionError
    if it has not finished by the deadline, with what its status was then (PENDING: no
    worker started it; STARTED: a worker runs it; RETRYING: it waits for another attempt).
    """
    try:
        return await handle.result(timeout=timeout)
    except ResultTimeout:
        state = await handle.info()
    raise AssertionError(unfinished(handle.task_name, handle.id, timeout, state))


def outcome_sync(handle: SyncHandle[R], timeout: float = 10.0) -> R:
    """``outcome`` for a handle of the sync facade (``app.sync.send(...)``), blocking."""
    try:
        return handle.result(timeout=timeout)
    except ResultTimeout:
        state = handle.info()
    raise AssertionError(unfinished(handle.task_name, handle.id, timeout, state))


def unfinished(task_name: str, task_id: str, timeout: float, state: TaskState) -> str:
    """What to say about a task that did not finish within ``timeout`` seconds."""
    return (
        f"task {task_name}[{task_id}] did not finish within {timeout} s: "
        f"at the deadline it was {describe(state)}"
    )


def describe(state: TaskState) -> str:
    """What a task's state means for a test waiting on it, in one phrase."""
    status = state.status
    if status is TaskStatus.PENDING:
        return "PENDING: no worker started it (does a worker run and consume its queue?)"
    if status is TaskStatus.STARTED:
        progress = "" if state.progress is None else f", progress {state.progress:g}"
        return f"STARTED: worker {state.worker} runs attempt {state.attempt}{progress}"
    if status is TaskStatus.RETRYING:
        error = f" after {state.error.type}: {state.error.message}" if state.error else ""
        return f"RETRYING: attempt {state.attempt} waits to be run again{error}"
    return f"{status.value}"  # finished between the timeout and the look
