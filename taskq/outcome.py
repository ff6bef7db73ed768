"""What became of a delivery, as a value; and how an exception becomes one. Pure.

Running a delivery yields exactly one Outcome; one function in the worker turns it into
broker actions (record, then publish where needed, then ack).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .exceptions import Reject, Retry
from .message import Envelope
from .results.base import ErrorInfo
from .retry import RetryPolicy
from .tracebacks import format_exception

# Reasons written to x-taskq-reason on the dead-letter queue.
INVALID_MESSAGE = "invalid-message"
UNKNOWN_TASK = "unknown-task"
INVALID_ARGS = "invalid-args"
MAX_ATTEMPTS = "max-attempts"
REJECTED = "rejected"
CRASH_LOOP = "crash-loop"
EXPIRED = "expired"
HARD_TIMEOUT = "hard-timeout"

DEFAULT_EXPLICIT_RETRY = RetryPolicy()


@dataclasses.dataclass(frozen=True, slots=True)
class Succeeded:
    """The task returned ``value``: record SUCCESS, then ack."""

    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class RetryLater:
    """Run again after ``delay`` seconds: record RETRYING, publish attempt+1 to the delay
    levels (confirmed; at ``priority`` if not None, else the attempt's own), then ack."""

    delay: float
    error: ErrorInfo
    priority: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """The last attempt failed: record FAILURE, keep a copy in ``.dead`` with ``reason``
    (max-attempts, or hard-timeout for a task whose process was killed), ack."""

    error: ErrorInfo
    reason: str = MAX_ATTEMPTS


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """Never run (or rejected): publish to ``.dead`` with ``reason``, record FAILURE if the
    task is known, then ack."""

    reason: str
    error: ErrorInfo


@dataclasses.dataclass(frozen=True, slots=True)
class CountRedelivery:
    """A redelivery (the last holder died before acking): republish with its deliveries
    count raised, then ack, so that a message that kills workers is eventually caught."""

    deliveries: int


@dataclasses.dataclass(frozen=True, slots=True)
class Requeue:
    """Give a delivery that never started back to its queue (shutdown): republish, then ack."""


@dataclasses.dataclass(frozen=True, slots=True)
class Skip:
    """Already done (a durable store shows SUCCESS), or a ``duplicate`` publish of a workflow
    step that another publish of its task ID claimed: ack without running."""

    duplicate: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Defer:
    """Not started: its rate limit's window is full. Publish the message unchanged (same
    attempt) to the delay levels for ``delay`` seconds, then ack: no attempt used."""

    delay: float


@dataclasses.dataclass(frozen=True, slots=True)
class Cancelled:
    """Revoked before it ran, or stopped while it ran: record CANCELLED with ``reason``, then
    ack (never dead-lettered: a cancel is what somebody asked for, not a failure)."""

    reason: str


Outcome = (
    Succeeded
    | RetryLater
    | Failed
    | DeadLetter
    | CountRedelivery
    | Requeue
    | Skip
    | Cancelled
    | Defer
)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What became of one delivery: its envelope (None if it could not be decoded), the
    Outcome, and for how many seconds the task's function ran (None if it never ran).

    The run time travels with the outcome, measured per run: two attempts of one task ID
    may overlap in a worker (a retry without delay arrives before the first attempt's
    outcome is told), so a clock kept by task ID would mix them up.
    """

    envelope: Envelope | None
    outcome: Outcome
    runtime: float | None = None


def qualified_name(exc_type: type[BaseException]) -> str:
    """``module.QualName`` of an exception type (builtins without the module)."""
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def error_info(exc: BaseException) -> ErrorInfo:
    """The exception as text: qualified type, message, formatted traceback.

    Never raises: a task's exception whose ``__str__`` fails must still become a FAILURE,
    not crash the worker's handling of the delivery.
    """
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__qualname__}: str() failed>"
    return ErrorInfo(
        type=qualified_name(type(exc)),
        message=message,
        traceback=format_exception(exc),
    )


def from_exception(exc: Exception, attempt: int, policy: RetryPolicy | None) -> Outcome:
    """The outcome of attempt ``attempt`` ending with ``exc``.

    ``Reject`` dead-letters at once; ``Retry`` retries (with the task's policy, or the default
    one, bounding attempts); any other exception retries only if the policy says so.
    """
    if isinstance(exc, Reject):
        return DeadLetter(REJECTED, ErrorInfo("taskq.Reject", exc.reason, ""))
    info = error_info(exc)
    if isinstance(exc, Retry):
        explicit = policy or DEFAULT_EXPLICIT_RETRY
        if attempt < explicit.max_attempts:
            delay = exc.delay if exc.delay is not None else explicit.backoff_delay(attempt)
            return RetryLater(max(0.0, delay), info, explicit.priority)
        return Failed(info)
    if policy is not None and policy.should_retry(exc, attempt):
        return RetryLater(policy.backoff_delay(attempt), info, policy.priority)
    return Failed(info)
