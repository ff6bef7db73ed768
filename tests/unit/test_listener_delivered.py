"""A durable store's listener resolves a sent task's ``delivered`` future when its outcome is
published (the send then stops waiting for the broker's confirm: issue 27)."""

from __future__ import annotations

from taskq.results.base import TaskState, TaskStatus
from taskq.results.listener import Listener


async def _never(listener: Listener) -> None:  # the session: never run in these tests
    raise AssertionError("no session in a unit test")


def _listener() -> Listener:
    return Listener(_never, "chan", (OSError,), "test")


async def test_the_outcome_of_an_expected_task_resolves_its_delivered_future() -> None:
    listener = _listener()
    listener.expect("t1")
    delivered = listener.delivered("t1")
    assert listener.delivered("t1") is delivered  # one per task
    listener.published(TaskState("t1", TaskStatus.STARTED))
    assert not delivered.done()  # only outcomes are published; anything else is not ours
    listener.published(TaskState("t1", TaskStatus.SUCCESS, result=3))
    assert delivered.done()
    early = listener.early("t1")
    assert early is not None and early.result == 3


async def test_a_task_not_expected_or_forgotten_resolves_nothing() -> None:
    listener = _listener()
    other = listener.delivered("other")  # never expected: its outcome is not kept
    listener.published(TaskState("other", TaskStatus.SUCCESS))
    assert not other.done()
    listener.expect("gone")
    gone = listener.delivered("gone")
    listener.forget("gone")  # its handle was dropped
    listener.published(TaskState("gone", TaskStatus.SUCCESS))
    assert not gone.done()
    assert listener.delivered("gone") is not gone
