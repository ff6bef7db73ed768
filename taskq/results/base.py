"""What a result store is: task statuses, the recorded state of a task, and the protocol."""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any, Protocol, runtime_checkable

from .. import codec
from ..exceptions import DecodeError


class TaskStatus(enum.StrEnum):
    """Where a task is. PENDING -> STARTED -> (RETRYING -> STARTED)* -> SUCCESS | FAILURE,
    or CANCELLED from any state that is not terminal (see docs/guide/cancellation.md)."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """Whether no later status can follow this one."""
        return self in _TERMINAL


_TERMINAL = frozenset((TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.CANCELLED))
_BY_VALUE = {status.value: status for status in TaskStatus}


STATUS_RANK = {
    TaskStatus.PENDING: 0,
    TaskStatus.STARTED: 1,
    TaskStatus.RETRYING: 2,
    TaskStatus.SUCCESS: 3,
    TaskStatus.FAILURE: 3,
    TaskStatus.CANCELLED: 3,
}
"""How far along each status is: a state of a lower rank never replaces one of a higher."""


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A remote exception as text: never pickled, never re-raised as its own type."""

    type: str
    message: str
    traceback: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskState:
    """The recorded state of one task."""

    task_id: str
    status: TaskStatus
    task_name: str = ""
    attempt: int = 1
    result: Any = None
    error: ErrorInfo | None = None
    worker: str | None = None
    updated_at: float = dataclasses.field(default_factory=time.time)
    progress: float | None = None
    progress_message: str | None = None
    sent_at: float | None = None
    """When the task was sent, started (first), finished: filled by durable stores only."""
    started_at: float | None = None
    finished_at: float | None = None

    def supersedes(self, older: TaskState | None) -> bool:
        """Whether this state may replace ``older``: a status never moves backwards.

        A terminal state is final; otherwise a later attempt wins, and within one attempt
        PENDING < STARTED < RETRYING < SUCCESS | FAILURE | CANCELLED. A late or duplicated
        update is ignored: of two terminal states racing (a cancel and the task's end), the
        first stored wins.
        """
        if older is None:
            return True
        if older.status.terminal:
            return False
        if self.status.terminal:
            return True
        if self.attempt != older.attempt:
            return self.attempt > older.attempt
        return STATUS_RANK[self.status] >= STATUS_RANK[older.status]

    def encode(self) -> bytes:
        """msgpack bytes of this state (raises EncodeError if the result cannot be carried)."""
        error = self.error
        return codec.pack(
            {
                "id": self.task_id,
                "status": self.status.value,
                "name": self.task_name,
                "attempt": self.attempt,
                "result": self.result,
                "error": None if error is None else [error.type, error.message, error.traceback],
                "worker": self.worker,
                "at": self.updated_at,
                "progress": self.progress,
                "progress_message": self.progress_message,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> TaskState:
        """The inverse of :meth:`encode`; raises DecodeError on anything malformed."""
        raw = codec.unpack(data)
        try:
            error = raw["error"]
            return cls(
                task_id=raw["id"],
                status=_BY_VALUE.get(raw["status"]) or TaskStatus(raw["status"]),
                task_name=raw.get("name", ""),
                attempt=raw.get("attempt", 1),
                result=raw.get("result"),
                error=None if error is None else ErrorInfo(*error),
                worker=raw.get("worker"),
                updated_at=raw.get("at", 0.0),
                progress=raw.get("progress"),
                progress_message=raw.get("progress_message"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"malformed task state: {exc}") from exc


@runtime_checkable
class ResultStore(Protocol):
    """Where task states are recorded (by workers) and read (by callers).

    ``record`` must not return before the state is safely stored: the worker acks the task
    message only after it returns.

    Optional: ``reaches(reply_to: str | None) -> bool``, whether a state recorded for a task
    sent with ``reply_to`` can reach anyone (the AMQP store: while that reply queue exists).
    A worker asks it first, so that a result nobody can receive costs nothing; without it, a
    state is recorded when the task has a reply address or the store is ``durable``.

    Optional: ``delivered(task_id: str) -> asyncio.Future[None] | None``, a future resolved
    when the first state of a task this process sends comes back (the AMQP store; the Redis
    store: its outcome): a send then returns at the first of the broker's confirm and that.
    """

    durable: bool
    """Whether states can be looked up by ID from any process (False: only by the sender)."""

    async def open(self) -> None:
        """Connect; raise a TaskqError subclass if the store cannot be reached."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    def reply_to(self) -> str | None:
        """The AMQP reply address to put on sent tasks, or None."""

    def track(self, task_id: str, task_name: str) -> None:
        """Note that this process sent ``task_id`` (so it is PENDING and awaited here)."""

    def forget(self, task_id: str) -> None:
        """Drop what this process keeps for ``task_id`` (its handle is gone)."""

    async def reset(self, task_id: str) -> None:
        """Drop the recorded state of ``task_id`` so that a replay of it is recorded afresh
        (a terminal state is otherwise final)."""

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        """Store ``state`` unless a newer one is stored (see TaskState.supersedes)."""

    async def get(self, task_id: str) -> TaskState | None:
        """The latest known state of ``task_id``, or None if none is recorded yet.
        ResultUnavailable if this store cannot know it (the AMQP store, for a task that
        another process sent)."""

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        """Wait until ``task_id`` is terminal (SUCCESS, FAILURE or CANCELLED); raise
        ResultTimeout past ``timeout``."""
