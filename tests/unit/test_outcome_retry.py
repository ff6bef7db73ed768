"""How an exception becomes an Outcome, retry math, and which task state wins."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from taskq import outcome
from taskq.exceptions import ConfigurationError, DecodeError, EncodeError, Reject, Retry
from taskq.outcome import DeadLetter, Failed, RetryLater
from taskq.results.base import ErrorInfo, TaskState, TaskStatus
from taskq.retry import NO_RETRY, RetryPolicy

EXACT = RetryPolicy(max_attempts=4, delay=2.0, backoff=3.0, max_delay=1000.0, jitter=False)


def raised(exc: Exception) -> Exception:
    """``exc`` with a traceback, as the worker sees it."""
    try:
        raise exc
    except Exception as caught:
        return caught


class Boom(Exception):
    pass


# -- outcome.from_exception -------------------------------------------------------------------


def test_reject_dead_letters_at_once() -> None:
    result = outcome.from_exception(raised(Reject("bad input")), 1, EXACT)
    assert isinstance(result, DeadLetter)
    assert result.reason == outcome.REJECTED == "rejected"
    assert result.error.type == "taskq.Reject"
    assert result.error.message == "bad input"


def test_reject_ignores_a_policy_that_would_retry() -> None:
    policy = RetryPolicy(max_attempts=10, retry_on=(Exception,))
    assert isinstance(outcome.from_exception(Reject(), 1, policy), DeadLetter)


def test_retry_with_delay() -> None:
    result = outcome.from_exception(raised(Retry(delay=7.5, reason="busy")), 1, None)
    assert isinstance(result, RetryLater)
    assert result.delay == 7.5
    assert result.error.type == "taskq.exceptions.Retry"
    assert result.error.message == "busy"


def test_retry_negative_delay_is_clamped() -> None:
    result = outcome.from_exception(Retry(delay=-3), 1, None)
    assert isinstance(result, RetryLater)
    assert result.delay == 0.0


def test_retry_without_delay_uses_the_policy_backoff() -> None:
    result = outcome.from_exception(raised(Retry()), 2, EXACT)
    assert isinstance(result, RetryLater)
    assert result.delay == EXACT.backoff_delay(2) == 6.0


def test_retry_without_policy_uses_the_default_policy() -> None:
    default = outcome.DEFAULT_EXPLICIT_RETRY
    result = outcome.from_exception(Retry(), 1, None)
    assert isinstance(result, RetryLater)
    assert default.delay / 2 <= result.delay <= default.delay
    exhausted = outcome.from_exception(Retry(), default.max_attempts, None)
    assert isinstance(exhausted, Failed)


def test_a_retry_carries_the_policy_priority_whether_raised_or_explicit() -> None:
    policy = dataclasses.replace(EXACT, priority=0)
    for exc in (Boom(), Retry(delay=1), Retry()):
        result = outcome.from_exception(raised(exc), 1, policy)
        assert isinstance(result, RetryLater)
        assert result.priority == 0
    keeps_its_own = outcome.from_exception(raised(Boom()), 1, EXACT)
    assert isinstance(keeps_its_own, RetryLater)
    assert keeps_its_own.priority is None


def test_retry_exhausted_fails() -> None:
    assert isinstance(outcome.from_exception(Retry(delay=1), 3, EXACT), RetryLater)
    result = outcome.from_exception(raised(Retry(delay=1)), 4, EXACT)
    assert isinstance(result, Failed)
    assert result.error.type == "taskq.exceptions.Retry"


def test_retry_respects_a_no_retry_policy() -> None:
    assert isinstance(outcome.from_exception(Retry(delay=1), 1, NO_RETRY), Failed)


def test_no_policy_means_failed() -> None:
    result = outcome.from_exception(raised(Boom("kaput")), 1, None)
    assert isinstance(result, Failed)
    assert result.error.type == f"{__name__}.Boom"
    assert result.error.message == "kaput"
    assert "Traceback" in result.error.traceback
    assert "raise exc" in result.error.traceback


def test_builtin_exception_type_has_no_module() -> None:
    result = outcome.from_exception(ValueError("v"), 1, None)
    assert isinstance(result, Failed)
    assert result.error.type == "ValueError"


def test_policy_retries_until_max_attempts() -> None:
    for attempt in (1, 2, 3):
        result = outcome.from_exception(Boom(), attempt, EXACT)
        assert isinstance(result, RetryLater), attempt
        assert result.delay == 2.0 * 3.0 ** (attempt - 1)
    assert isinstance(outcome.from_exception(Boom(), 4, EXACT), Failed)
    assert isinstance(outcome.from_exception(Boom(), 5, EXACT), Failed)


def test_policy_retry_on() -> None:
    policy = RetryPolicy(retry_on=(ConnectionError, TimeoutError), jitter=False)
    assert isinstance(outcome.from_exception(ConnectionResetError(), 1, policy), RetryLater)
    assert isinstance(outcome.from_exception(TimeoutError(), 1, policy), RetryLater)
    assert isinstance(outcome.from_exception(ValueError(), 1, policy), Failed)


def test_policy_give_up_on_wins_over_retry_on() -> None:
    policy = RetryPolicy(retry_on=(OSError,), give_up_on=(PermissionError,), jitter=False)
    assert isinstance(outcome.from_exception(OSError(), 1, policy), RetryLater)
    assert isinstance(outcome.from_exception(PermissionError(), 1, policy), Failed)
    assert policy.should_retry(FileNotFoundError(), 1)
    assert not policy.should_retry(PermissionError(), 1)


def test_reasons() -> None:
    assert (
        outcome.INVALID_MESSAGE,
        outcome.UNKNOWN_TASK,
        outcome.INVALID_ARGS,
        outcome.MAX_ATTEMPTS,
        outcome.REJECTED,
        outcome.CRASH_LOOP,
        outcome.EXPIRED,
    ) == (
        "invalid-message",
        "unknown-task",
        "invalid-args",
        "max-attempts",
        "rejected",
        "crash-loop",
        "expired",
    )


# -- RetryPolicy ------------------------------------------------------------------------------


def test_backoff_without_jitter_is_exact() -> None:
    assert [EXACT.backoff_delay(n) for n in (1, 2, 3, 4)] == [2.0, 6.0, 18.0, 54.0]


def test_backoff_attempt_zero_is_the_base_delay() -> None:
    assert EXACT.backoff_delay(0) == 2.0


def test_backoff_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(delay=1.0, backoff=10.0, max_delay=50.0, jitter=False)
    assert [policy.backoff_delay(n) for n in (1, 2, 3, 4, 50)] == [1.0, 10.0, 50.0, 50.0, 50.0]


def test_backoff_of_one_is_constant() -> None:
    policy = RetryPolicy(delay=5.0, backoff=1.0, jitter=False)
    assert {policy.backoff_delay(n) for n in range(1, 10)} == {5.0}


def test_backoff_with_jitter_is_in_the_upper_half() -> None:
    policy = RetryPolicy(delay=4.0, backoff=2.0, max_delay=100.0, jitter=True)
    for attempt in (1, 2, 3, 4, 5, 6):
        base = min(100.0, 4.0 * 2.0 ** (attempt - 1))
        samples = [policy.backoff_delay(attempt) for _ in range(200)]
        assert all(base / 2 <= s <= base for s in samples), attempt
        assert len(set(samples)) > 1  # it does vary


def test_zero_delay_policy() -> None:
    policy = RetryPolicy(delay=0.0, jitter=True)
    assert policy.backoff_delay(3) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"delay": -1.0},
        {"max_delay": -0.5},
        {"backoff": 0.5},
        {"priority": -1},
    ],
)
def test_invalid_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXACT.max_attempts = 9  # type: ignore[misc]


def test_max_attempts_one_never_retries() -> None:
    assert not NO_RETRY.should_retry(Exception(), 1)


# -- TaskState ----------------------------------------------------------------------------------


def state(status: TaskStatus, attempt: int = 1) -> TaskState:
    return TaskState("t1", status, "add", attempt)


S = TaskStatus


def test_anything_supersedes_nothing() -> None:
    assert state(S.STARTED).supersedes(None)


@pytest.mark.parametrize("final", [S.SUCCESS, S.FAILURE, S.CANCELLED])
@pytest.mark.parametrize("newer", list(TaskStatus))
def test_terminal_is_final(final: TaskStatus, newer: TaskStatus) -> None:
    old = state(final, 1)
    assert not state(newer, 1).supersedes(old)
    assert not state(newer, 2).supersedes(old)


def test_late_started_after_success_is_ignored() -> None:
    assert not state(S.STARTED, 1).supersedes(state(S.SUCCESS, 1))
    assert not state(S.STARTED, 2).supersedes(state(S.SUCCESS, 1))


def test_later_attempt_wins() -> None:
    assert state(S.STARTED, 2).supersedes(state(S.RETRYING, 1))
    assert not state(S.RETRYING, 1).supersedes(state(S.STARTED, 2))
    assert not state(S.STARTED, 1).supersedes(state(S.PENDING, 2))


def test_terminal_beats_any_earlier_non_terminal() -> None:
    # A result of attempt 1 arriving after attempt 2's STARTED still ends the task.
    assert state(S.SUCCESS, 1).supersedes(state(S.STARTED, 2))
    assert state(S.FAILURE, 1).supersedes(state(S.RETRYING, 3))


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (S.STARTED, S.PENDING, True),
        (S.RETRYING, S.STARTED, True),
        (S.SUCCESS, S.STARTED, True),
        (S.FAILURE, S.RETRYING, True),
        (S.STARTED, S.STARTED, True),  # e.g. a progress update
        (S.PENDING, S.STARTED, False),
        (S.STARTED, S.RETRYING, False),
        (S.PENDING, S.RETRYING, False),
    ],
)
def test_rank_order_within_an_attempt(new: TaskStatus, old: TaskStatus, expected: bool) -> None:
    assert state(new, 2).supersedes(state(old, 2)) is expected


def test_terminal_statuses() -> None:
    assert {s for s in TaskStatus if s.terminal} == {S.SUCCESS, S.FAILURE, S.CANCELLED}


def test_a_cancel_ends_any_state_that_is_not_terminal() -> None:
    for older in (S.PENDING, S.STARTED, S.RETRYING):
        assert state(S.CANCELLED, 1).supersedes(state(older, 3))


def test_state_round_trip() -> None:
    original = TaskState(
        task_id="t1",
        status=S.FAILURE,
        task_name="add",
        attempt=3,
        result={"when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "amount": Decimal("1.10")},
        error=ErrorInfo("ValueError", "bad", "Traceback..."),
        worker="host:123",
        updated_at=1_700_000_000.5,
        progress=0.5,
        progress_message="half",
    )
    assert TaskState.decode(original.encode()) == original


def test_state_round_trip_minimal() -> None:
    original = TaskState("t2", S.SUCCESS, updated_at=1.0)
    decoded = TaskState.decode(original.encode())
    assert decoded == original
    assert decoded.error is None
    assert decoded.status is S.SUCCESS


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",
        b"\x90",  # an empty list
        b"\x80",  # an empty map
    ],
)
def test_state_decode_garbage(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        TaskState.decode(payload)


def test_state_decode_unknown_status() -> None:
    data = dataclasses.replace(state(S.STARTED), updated_at=1.0).encode()
    data = data.replace(b"STARTED", b"BLARGED")
    with pytest.raises(DecodeError):
        TaskState.decode(data)


def test_state_with_unserialisable_result() -> None:
    with pytest.raises(EncodeError):
        TaskState("t3", S.SUCCESS, result=object()).encode()


def test_error_info_survives_an_exception_whose_str_fails() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    try:
        raise Unprintable()
    except Unprintable as exc:
        info = outcome.error_info(exc)
    assert info.type.endswith("Unprintable")
    assert "str() failed" in info.message
    assert "Unprintable" in info.traceback
