"""What travels between the worker and a pool child: length-prefixed msgpack frames (via
:mod:`taskq.codec`, never pickle). Pure: both sides use it.

worker -> child: a job ``["run", task, args, kwargs, attempt, context, timeout]``; end of
input (the pipe closed) tells the child to exit.
child -> worker: ``["ready", pid]`` once the App is imported; per job, any number of
``["progress", fraction, message]``, then ``["done", outcome, rss_kib]``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from typing import Any

from .. import codec
from .. import outcome as oc
from ..exceptions import DecodeError
from ..results.base import ErrorInfo

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 31


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One run of a task in a child: the raw (unvalidated) arguments as the message carried
    them, the context ``taskq.current()`` gives there, and the soft timeout (seconds)."""

    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    task_id: str
    queue: str
    root_id: str | None
    scheduled_for: dt.datetime | None
    partition: int | None
    timeout: float | None

    def to_frame(self) -> bytes:
        """The job as a frame (header included)."""
        return frame([
            "run", self.task_name, self.args, self.kwargs, self.attempt,
            [self.task_id, self.queue, self.root_id, self.scheduled_for, self.partition],
            self.timeout,
        ])  # fmt: skip

    @classmethod
    def from_message(cls, message: list[Any]) -> Job:
        """The job of a ``run`` message (DecodeError if it is not one)."""
        try:
            _, name, args, kwargs, attempt, context, timeout = message
            task_id, queue, root_id, scheduled_for, partition = context
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"not a job: {exc}") from None
        return cls(
            name, args, kwargs, attempt, task_id, queue, root_id, scheduled_for, partition,
            timeout,
        )  # fmt: skip


def frame(message: Any) -> bytes:
    """``message`` as msgpack with its 4-byte length in front."""
    body = codec.pack(message)
    return HEADER.pack(len(body)) + body


def encode_outcome(outcome: oc.Outcome) -> list[Any]:
    """An Outcome that a child can reach (not Skip, Requeue or CountRedelivery) as plain data."""
    match outcome:
        case oc.Succeeded(value):
            return ["ok", value]
        case oc.RetryLater(delay, error, priority):
            return ["retry", [delay, priority], *_error(error)]
        case oc.Failed(error, reason):
            return ["failed", reason, *_error(error)]
        case oc.DeadLetter(reason, error):
            return ["dead", reason, *_error(error)]
    raise ValueError(f"a child does not reach {outcome!r}")


def decode_outcome(data: list[Any]) -> oc.Outcome:
    """The Outcome ``encode_outcome`` made ``data`` from (DecodeError if it is not one)."""
    try:
        kind, *rest = data
        if kind == "ok":
            (value,) = rest
            return oc.Succeeded(value)
        first, *error = rest
        info = ErrorInfo(*error)
        if kind == "retry":
            delay, priority = first
            return oc.RetryLater(float(delay), info, None if priority is None else int(priority))
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"not an outcome: {exc}") from None
    if kind == "failed":
        return oc.Failed(info, str(first))
    if kind == "dead":
        return oc.DeadLetter(str(first), info)
    raise DecodeError(f"unknown outcome kind {kind!r}")


def _error(error: ErrorInfo) -> list[str]:
    return [error.type, error.message, error.traceback]
