"""How an in-process worker treats tasks: failures, timeouts, unserialisable results, status,
pydantic values, crash loops and a graceful stop. Real RabbitMQ, one prefix per test."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import aio_pika
import pydantic
import pytest

from taskq import App, ResultTimeout, TaskFailed, TaskStatus, Worker, codec
from taskq.message import H_ERROR_TYPE, H_REASON, Envelope
from tests.support import (
    BROKER,
    eventually,
    make_worker,
    queue_length,
    queue_messages,
    running_worker,
)


class Item(pydantic.BaseModel):
    sku: str
    price: Decimal


class Order(pydantic.BaseModel):
    id: uuid.UUID
    placed_at: dt.datetime
    items: list[Item]


class Receipt(pydantic.BaseModel):
    order_id: uuid.UUID
    total: Decimal
    confirmed_at: dt.datetime


class Probe:
    """What the tasks of one test share with it: run counts and gates to hold tasks."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.gate = asyncio.Event()
        self.thread_gate = threading.Event()

    def ran(self, name: str) -> None:
        self.runs[name] = self.runs.get(name, 0) + 1


@pytest.fixture
def probe() -> Iterator[Probe]:
    probe = Probe()
    yield probe
    probe.thread_gate.set()  # end the thread a timed-out plain task left blocked


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], probe: Probe) -> App:
    app = App("behave", broker=BROKER, prefix=prefix, shutdown_timeout=5)
    _register(app, probe)
    return app


def _register(app: App, probe: Probe) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        probe.ran("add")
        return x + y

    @app.task
    async def explode(order_id: int) -> None:
        raise ValueError(f"bad order {order_id}")

    @app.task(timeout=0.3)
    async def slow_async() -> None:
        await asyncio.wait_for(probe.gate.wait(), 60)

    @app.task(timeout=0.3)
    def slow_sync() -> None:
        probe.thread_gate.wait(60)

    @app.task
    async def unserialisable() -> object:
        return object()

    @app.task
    async def held() -> str:
        probe.ran("held")
        await probe.gate.wait()
        return "released"

    @app.task
    async def confirm(order: Order) -> Receipt:
        assert isinstance(order, Order)
        total = sum((item.price for item in order.items), Decimal("0"))
        return Receipt(order_id=order.id, total=total, confirmed_at=order.placed_at)


@pytest.fixture
async def worker(app: App) -> AsyncIterator[Worker]:
    async with app, running_worker(app) as worker:
        yield worker


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def still_serving(app: App) -> None:
    handle = await app.tasks["add"].delay(20, 22)
    assert await handle.result(timeout=10) == 42


async def dead_letters(app: App, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    dead = app.names.dead_queue("default")

    async def filled() -> bool:
        return await queue_length(dead) >= count

    await eventually(filled, what=f"{count} message(s) in {dead}")
    return await queue_messages("", dead)


# -- failures ------------------------------------------------------------------------------


async def test_raising_task_fails_with_remote_details_and_a_dead_copy(
    app: App, worker: Worker
) -> None:
    handle = await app.tasks["explode"].delay(7)
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=10)
    assert info.value.task_id == handle.id
    assert info.value.remote_type == "ValueError"
    assert info.value.remote_message == "bad order 7"
    assert 'raise ValueError(f"bad order {order_id}")' in info.value.remote_traceback
    assert await handle.status() is TaskStatus.FAILURE

    (message,) = await dead_letters(app, 1)  # no retry policy: one attempt, then .dead
    assert message.message_id == handle.id
    assert text(message.headers[H_REASON]) == "max-attempts"
    assert text(message.headers[H_ERROR_TYPE]) == "ValueError"
    assert worker.counters.failed == 1
    await still_serving(app)


@pytest.mark.parametrize("task_name", ["slow_async", "slow_sync"])
async def test_task_past_its_timeout_fails_with_task_timeout(
    app: App, worker: Worker, task_name: str
) -> None:
    handle = await app.tasks[task_name].delay()
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=10)
    assert info.value.remote_type == "taskq.exceptions.TaskTimeout"
    assert "0.3" in info.value.remote_message
    assert await handle.status() is TaskStatus.FAILURE
    assert handle.id not in worker.active
    await still_serving(app)


@pytest.mark.idle_extra_queue  # it counts everything its worker did
async def test_unserialisable_result_fails_the_task(app: App, worker: Worker) -> None:
    handle = await app.tasks["unserialisable"].delay()
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=10)
    assert info.value.remote_type == "taskq.exceptions.EncodeError"
    assert "object" in info.value.remote_message
    (message,) = await dead_letters(app, 1)
    assert text(message.headers[H_REASON]) == "max-attempts"
    assert worker.counters.succeeded == 0 and worker.counters.failed == 1
    await still_serving(app)


# -- status and values ---------------------------------------------------------------------


async def test_status_goes_started_then_success(app: App, probe: Probe, worker: Worker) -> None:
    handle = await app.tasks["held"].delay()

    async def started() -> bool:
        return await handle.status() is TaskStatus.STARTED

    await eventually(started, what="STARTED")
    assert handle.id in worker.active
    with pytest.raises(ResultTimeout) as info:
        await handle.result(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert await handle.status() is TaskStatus.STARTED  # waiting did not change it

    probe.gate.set()
    assert await handle.result(timeout=10) == "released"
    assert await handle.status() is TaskStatus.SUCCESS
    assert probe.runs["held"] == 1


async def test_pydantic_models_travel_both_ways(app: App, worker: Worker) -> None:
    order = Order(
        id=uuid.uuid4(),
        placed_at=dt.datetime(
            2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
        items=[Item(sku="a", price=Decimal("1.10")), Item(sku="b", price=Decimal("2.205"))],
    )
    handle = await app.tasks["confirm"].delay(order)
    receipt = await handle.result(timeout=10)
    assert isinstance(receipt, Receipt)
    assert receipt.order_id == order.id and isinstance(receipt.order_id, uuid.UUID)
    assert receipt.total == Decimal("3.305") and isinstance(receipt.total, Decimal)
    assert receipt.confirmed_at == order.placed_at
    assert receipt.confirmed_at.utcoffset() == dt.timedelta(hours=2)


# -- crash loops ---------------------------------------------------------------------------


async def make_redelivered(app: App) -> None:
    """Take the one message of the default work queue without acking it and close the channel:
    the broker puts it back with ``redelivered`` set, as after a worker that died mid-task."""
    work_queue = app.names.work_queue("default")
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(work_queue, passive=True)
        message = await queue.get(no_ack=False, fail=True)
        assert message is not None and not message.redelivered
        await channel.close()
    finally:
        await connection.close()

    async def back() -> bool:
        return await queue_length(work_queue) == 1

    await eventually(back, what="the unacked message back in the work queue")


async def send_with_deliveries(app: App, deliveries: int) -> str:
    """Publish an ``add(1, 2)`` message whose deliveries header is already ``deliveries``."""
    task_id = str(uuid.uuid4())
    envelope = Envelope(
        task_id=task_id,
        task_name="add",
        queue="default",
        args=[1, 2],
        kwargs={},
        deliveries=deliveries,
        reply_to=app.store.reply_to(),
    )
    app.store.track(task_id, "add")
    await app.transport.declare_work_queue("default")
    await app.transport.publish(app.names.exchange, "default", envelope.to_message())
    return task_id


async def test_redelivery_past_the_limit_is_a_crash_loop(app: App, probe: Probe) -> None:
    limit = app.settings.max_deliveries
    async with app:
        task_id = await send_with_deliveries(app, limit - 1)
        await make_redelivered(app)
        async with running_worker(app):
            with pytest.raises(TaskFailed) as info:
                await app.handle(task_id, "add").result(timeout=10)
            (message,) = await dead_letters(app, 1)
    assert info.value.remote_type == "taskq.CrashLoop"
    assert text(message.headers[H_REASON]) == "crash-loop"
    assert message.message_id == task_id
    assert probe.runs.get("add", 0) == 0
    assert await queue_length(app.names.work_queue("default")) == 0


@pytest.mark.idle_extra_queue  # it counts everything its worker did
async def test_redelivery_under_the_limit_runs_once(app: App, probe: Probe) -> None:
    async with app:
        task_id = await send_with_deliveries(app, 0)
        await make_redelivered(app)
        async with running_worker(app) as worker:
            assert await app.handle(task_id, "add").result(timeout=10) == 3
        # The worker has stopped: anything it had not acked would be back in the queue now.
        assert await queue_length(app.names.work_queue("default")) == 0
        assert await queue_length(app.names.dead_queue("default")) == 0
    assert probe.runs["add"] == 1
    assert worker.counters.succeeded == 1


async def test_counted_redelivery_carries_the_deliveries_header(app: App) -> None:
    async with app:
        await send_with_deliveries(app, 1)
        await make_redelivered(app)
        # A worker that knows no task dead-letters what it runs: the copy shows the header.
        bare = App("bare", broker=BROKER, prefix=app.settings.prefix)
        async with running_worker(bare, queues=["default"]):
            (message,) = await dead_letters(app, 1)
    assert codec.unpack(message.body)[3]["d"] == 2  # schema 2 metadata: deliveries
    assert text(message.headers[H_REASON]) == "unknown-task"


# -- graceful stop -------------------------------------------------------------------------


async def start_worker(app: App, **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    worker = make_worker(app, **options)
    run = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 20)
    return worker, run


@pytest.mark.idle_extra_queue  # it counts everything its worker did
async def test_stop_lets_the_running_task_finish(app: App, probe: Probe) -> None:
    async with app:
        worker, run = await start_worker(app)
        try:
            handle = await app.tasks["held"].delay()
            await eventually(lambda: _is_active(worker, handle.id), what="task running")
            worker.stop()
            assert worker.stopping
            probe.gate.set()
            assert await handle.result(timeout=10) == "released"
            await asyncio.wait_for(run, 10)
        finally:
            worker.stop()
            await asyncio.wait_for(run, 30)
        assert worker.counters.succeeded == 1 and worker.counters.requeued == 0
        assert await queue_length(app.names.work_queue("default")) == 0


@pytest.mark.idle_extra_queue  # it counts everything its worker requeued
async def test_stop_past_the_grace_period_requeues_the_running_task(app: App, probe: Probe) -> None:
    work_queue = app.names.work_queue("default")
    async with app:
        worker, run = await start_worker(app, shutdown_timeout=0.2)
        try:
            handle = await app.tasks["held"].delay()
            await eventually(lambda: _is_active(worker, handle.id), what="task running")
            worker.stop()
            await asyncio.wait_for(run, 10)
        finally:
            worker.stop()
            await asyncio.wait_for(run, 30)
        assert worker.counters.requeued == 1

        async def requeued() -> bool:
            return await queue_length(work_queue) == 1

        await eventually(requeued, what="the interrupted task back in its queue")
        assert await handle.status() is TaskStatus.STARTED

        probe.gate.set()  # the next worker runs it to the end
        async with running_worker(app):
            assert await handle.result(timeout=10) == "released"
    assert probe.runs["held"] == 2


async def _is_active(worker: Worker, task_id: str) -> bool:
    return task_id in worker.active
