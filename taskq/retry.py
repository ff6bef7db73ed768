"""RetryPolicy: when and how long to wait before running a failed task again. Pure."""

from __future__ import annotations

import dataclasses
import random

from .exceptions import ConfigurationError


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task is retried.

    Attempt ``n`` (1-based) that fails with an exception matching ``retry_on`` and not
    ``give_up_on`` is run again after ``min(max_delay, delay * backoff ** (n - 1))`` seconds,
    drawn uniformly from the upper half of that when ``jitter`` is on, until ``max_attempts``
    attempts have run. ``max_attempts=1`` means no retries.

    ``priority``: the message priority retried attempts are sent at (None: the task's own),
    as Celery's ``retry(priority=...)``. It orders a retry that goes back through the work
    queue (one without a delay: work queues are priority queues); a retry below fresh work's
    priority (``App(default_priority=1)`` with ``RetryPolicy(priority=0)``) then waits behind
    the fresh tasks sent meanwhile instead of going ahead of them. Retries with a delay are held
    by a worker until they are due, and due ones always yield to fresh deliveries there.
    Checked against ``max_priority`` when a task is registered; classic work queues only.
    """

    max_attempts: int = 3
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()
    priority: int | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        if self.delay < 0 or self.max_delay < 0 or self.backoff < 1:
            raise ConfigurationError("RetryPolicy: delays must be >= 0 and backoff >= 1")
        if self.priority is not None and self.priority < 0:
            raise ConfigurationError("RetryPolicy.priority must be >= 0")

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt`` failing with ``exc`` earns another attempt."""
        if attempt >= self.max_attempts:
            return False
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return isinstance(exc, self.retry_on)

    def backoff_delay(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed."""
        base = min(self.max_delay, self.delay * self.backoff ** max(0, attempt - 1))
        if self.jitter:
            return random.uniform(base / 2, base)
        return base


NO_RETRY = RetryPolicy(max_attempts=1)
