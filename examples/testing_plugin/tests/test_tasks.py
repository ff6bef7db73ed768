"""The shop's tasks, run by a real worker on a real RabbitMQ, each test under its own prefix."""

import pytest
from tasks import SHIPPED, add, fetch_rate, reserve, ship

from taskq import App, TaskFailed, TaskStatus, Worker
from taskq.testing.pytest_plugin import AwaitOutcome, WaitFor


async def test_add(taskq_worker: Worker, taskq_outcome: AwaitOutcome) -> None:
    handle = await add.delay(2, 3)
    assert await taskq_outcome(handle, timeout=10) == 5


async def test_a_failure_comes_back_as_task_failed(
    taskq_worker: Worker, taskq_outcome: AwaitOutcome
) -> None:
    handle = await reserve.delay("socks", 5)
    with pytest.raises(TaskFailed) as failed:
        await taskq_outcome(handle)
    assert failed.value.remote_type.endswith("OutOfStock")
    assert failed.value.remote_message == "only 3 socks left, 5 ordered"
    assert await handle.status() is TaskStatus.FAILURE


async def test_a_retried_task_succeeds_on_its_second_attempt(
    taskq_worker: Worker, taskq_outcome: AwaitOutcome
) -> None:
    handle = await fetch_rate.delay("EUR")
    assert await taskq_outcome(handle) == "EUR: 1.0 (attempt 2)"
    assert taskq_worker.counters.retried == 1


async def test_a_side_effect(taskq_worker: Worker, taskq_wait_for: WaitFor) -> None:
    await ship.delay("order-7")

    async def shipped() -> bool:
        return "order-7" in SHIPPED

    await taskq_wait_for(shipped, timeout=10, what="order-7 to ship")


async def test_what_an_unfinished_task_looks_like(
    taskq_client: App, taskq_outcome: AwaitOutcome
) -> None:
    """taskq_client alone lets a test send (taskq_worker builds on it); with no worker to run
    the task, taskq_outcome says so at its deadline."""
    handle = await add.delay(1, 1)
    with pytest.raises(AssertionError, match="PENDING: no worker started it"):
        await taskq_outcome(handle, timeout=0.5)
