"""Delayed tasks on every transport: a worker holds each one until its due time, decoded
while it waits, then runs it once and never early; a held message that cannot be decoded is
dead-lettered when it comes due, and the worker goes on."""

from __future__ import annotations

import struct
import time

from taskq import App, delays, dlq
from taskq.message import CONTENT_TYPE, Envelope, OutgoingMessage
from taskq.outcome import INVALID_MESSAGE
from tests.foreign_producer import raw_amqp, short, table
from tests.support import eventually, running_worker

COUNTDOWNS = (1.5, 2.0, 2.5)


async def test_held_tasks_are_decoded_ahead_and_run_once_at_their_due_time(app: App) -> None:
    async with app, running_worker(app) as worker:
        add = app.tasks["add"]
        called = time.time()
        handles = [await add.options(countdown=c).delay(i, i) for i, c in enumerate(COUNTDOWNS)]

        async def all_held() -> bool:
            return len(worker.holder) == len(COUNTDOWNS)

        await eventually(all_held, what="every delayed task held by the worker")
        assert all(d.decoded is not None for _, d in worker.holder.held())
        for i, (handle, countdown) in enumerate(zip(handles, COUNTDOWNS, strict=True)):
            assert await handle.result(timeout=30) == 2 * i
            assert time.time() >= called + countdown  # it ended after its due time
        assert len(worker.holder) == 0 and worker.counters.requeued == 0
        assert await dlq.list_dead(app.transport, "default") == []


async def test_a_held_message_that_cannot_be_decoded_is_dead_lettered_when_due(
    app: App,
) -> None:
    async with app, running_worker(app) as worker:
        await app.transport.declare_work_queue("default")
        garbage = OutgoingMessage(
            body=b"\xc1 not msgpack", message_id="garbled", type="add",
            headers=delays.due_header(1_000),
        )  # fmt: skip
        await app.transport.publish("", app.names.hold_queue("default"), garbage)

        async def parked() -> bool:
            return bool(await dlq.list_dead(app.transport, "default"))

        await eventually(parked, what="the garbled held message dead-lettered")
        (dead,) = await dlq.list_dead(app.transport, "default")
        assert dead.task_id == "garbled"
        assert dead.reason == INVALID_MESSAGE
        handle = await app.tasks["add"].delay(1, 2)  # and the worker goes on
        assert await handle.result(timeout=30) == 3
        assert worker.counters.requeued == 0


async def test_a_due_time_another_client_wrote_as_a_double_is_kept(app: App) -> None:
    # Another client may write the due time (ms) as an AMQP double where taskq writes an
    # integer: the message is still held until then, never run early.
    async with app, running_worker(app) as worker:
        await app.transport.declare_work_queue("default")
        due_ms = (time.time() + 1.5) * 1000
        async with raw_amqp() as producer:
            for task_id, due in ((b"double", due_ms), (b"integral-double", float(round(due_ms)))):
                body = Envelope(task_id.decode(), "add", "default", [1, 2], {}).to_message().body
                due_field = short(delays.H_DUE.encode()) + b"d" + struct.pack(">d", due)
                await producer.publish(
                    "", app.names.hold_queue("default"), body,
                    content_type=short(CONTENT_TYPE.encode()), headers=table(due_field),
                    delivery_mode=b"\x02", message_id=short(task_id), type=short(b"add"),
                )  # fmt: skip

        async def both_held() -> bool:
            return len(worker.holder) == 2

        await eventually(both_held, what="both foreign delayed messages held")
        assert time.time() * 1000 < due_ms  # held, not run: the test saw it before its time
        assert [round(at * 1000) for at, _ in worker.holder.held()] == [round(due_ms)] * 2

        async def both_released() -> bool:
            return len(worker.holder) == 0

        await eventually(both_released, what="both foreign delayed messages come due")
        assert time.time() * 1000 >= due_ms
        assert worker.counters.requeued == 0
        assert await dlq.list_dead(app.transport, "default") == []
