"""Messages a worker must not run land in the queue's ``.dead`` queue with a reason and the
error, keep their original body, and the worker goes on serving."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import msgpack
import pytest

from taskq import App, TaskFailed, TaskStatus, Worker, codec
from taskq.message import H_ERROR_MESSAGE, H_ERROR_TYPE, H_REASON
from tests.foreign_producer import raw_amqp, short
from tests.support import (
    BROKER,
    adding_app,
    eventually,
    queue_length,
    queue_messages,
    running_worker,
)


@pytest.fixture
def runs() -> list[tuple[int, int]]:
    return []


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], runs: list[tuple[int, int]]) -> App:
    return adding_app("bad", prefix, runs)


@pytest.fixture
async def worker(app: App) -> AsyncIterator[Worker]:
    async with app, running_worker(app) as worker:
        yield worker


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def publish_raw(app: App, body: bytes, **properties: Any) -> None:
    """Publish a message to the default work queue with aio-pika directly, as a foreign
    producer would (confirmed, so it is in the queue when this returns; a return raises)."""
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(app.names.exchange, ensure=False)
        await exchange.publish(aio_pika.Message(body, **properties), "default", mandatory=True)
    finally:
        await connection.close()


async def publish_without_message_id(app: App, body: bytes, **properties: str) -> None:
    """Publish with bare AMQP frames: aiormq gives every message it publishes a message_id,
    so a producer that sends none (any other client may) cannot be imitated with aio-pika."""
    raw = {name: short(value.encode()) for name, value in properties.items()}
    async with raw_amqp() as amqp:
        await amqp.publish(app.names.exchange, "default", body, **raw)


async def dead_letters(app: App, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Wait until the default queue's dead queue holds ``count`` messages; return them."""
    dead = app.names.dead_queue("default")

    async def filled() -> bool:
        return await queue_length(dead) >= count

    await eventually(filled, what=f"{count} message(s) in {dead}")
    messages = await queue_messages("", dead)
    assert len(messages) == count
    return messages


async def still_serving(app: App, x: int) -> None:
    handle = await app.tasks["add"].delay(x, 1)
    assert await handle.result(timeout=10) == x + 1


def assert_dead(
    message: aio_pika.abc.AbstractIncomingMessage, reason: str, body: bytes | None
) -> None:
    """The dead copy carries the reason and the error; ``body``, if given, is kept as is."""
    headers = message.headers
    assert text(headers[H_REASON]) == reason
    assert text(headers[H_ERROR_TYPE])
    assert text(headers[H_ERROR_MESSAGE])
    if body is not None:
        assert message.body == body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xc1\xc1 this is not msgpack", "application/x-msgpack"),
        # A valid taskq body under a foreign label: the label decides, it is never run.
        (msgpack.packb([[1, 2], {}]), "application/python-pickle"),
        (json.dumps([[1, 2], {}]).encode(), "application/json"),
        # A body that is msgpack but not [args, kwargs].
        (msgpack.packb({"x": 1}), "application/x-msgpack"),
    ],
    ids=["garbage", "pickle", "json", "not-args-kwargs"],
)
async def test_undecodable_message_is_dead_lettered_as_invalid(
    app: App, worker: Worker, runs: list[tuple[int, int]], body: bytes, content_type: str
) -> None:
    await publish_raw(
        app, body, content_type=content_type, message_id=str(uuid.uuid4()), type="add"
    )
    (message,) = await dead_letters(app, 1)
    assert_dead(message, "invalid-message", body)
    assert text(message.headers[H_ERROR_TYPE]) == "taskq.exceptions.DecodeError"
    assert runs == []
    await still_serving(app, 41)
    assert runs == [(41, 1)]


async def test_a_body_nested_too_deep_says_why_in_its_dead_letter(
    app: App, worker: Worker, runs: list[tuple[int, int]]
) -> None:
    # 200,000 one-element arrays inside each other: msgpack refuses it with an exception whose
    # text is empty, which used to leave the dead letter's error message ending in ": ".
    body = b"\x91" * 200_000 + b"\xc0"
    await publish_raw(
        app, body, content_type="application/x-msgpack", message_id=str(uuid.uuid4()), type="add"
    )
    (message,) = await dead_letters(app, 1)
    assert_dead(message, "invalid-message", body)
    error = text(message.headers[H_ERROR_MESSAGE])
    assert "nesting too deep" in error, error
    assert not error.rstrip().endswith(":"), error
    assert runs == []
    await still_serving(app, 7)


async def test_message_without_id_is_invalid(
    app: App, worker: Worker, runs: list[tuple[int, int]]
) -> None:
    body = msgpack.packb([[1, 2], {}])
    await publish_without_message_id(app, body, content_type="application/x-msgpack", type="add")
    (message,) = await dead_letters(app, 1)
    assert_dead(message, "invalid-message", body)
    # The dead-lettered copy does carry a message_id: aiormq invents one when republishing.
    assert "message_id" in text(message.headers[H_ERROR_MESSAGE])
    assert runs == []
    await still_serving(app, 1)


async def test_unknown_task_is_dead_lettered(app: App, worker: Worker) -> None:
    handle = await app.send("nope", 1, two=2)
    (message,) = await dead_letters(app, 1)
    assert_dead(message, "unknown-task", None)
    assert codec.unpack(message.body)[1:3] == [[1], {"two": 2}]  # the body kept as sent
    assert message.message_id == handle.id
    assert "nope" in text(message.headers[H_ERROR_MESSAGE])
    await still_serving(app, 2)


async def test_invalid_arguments_fail_the_task_and_are_dead_lettered(
    app: App, worker: Worker, runs: list[tuple[int, int]]
) -> None:
    handle = await app.send("add", "not-an-int", 1)
    with pytest.raises(TaskFailed) as info:
        await handle.result(timeout=10)
    assert info.value.remote_type == "taskq.exceptions.InvalidArguments"
    assert "not-an-int" in info.value.remote_message
    assert await handle.status() is TaskStatus.FAILURE
    (message,) = await dead_letters(app, 1)
    assert_dead(message, "invalid-args", None)
    assert codec.unpack(message.body)[1:3] == [["not-an-int", 1], {}]
    assert runs == []
    await still_serving(app, 3)


async def test_several_bad_messages_in_a_row(app: App, worker: Worker) -> None:
    """The worker survives a mix of bad input, and each one is counted as dead-lettered."""
    await publish_raw(app, b"\x00", content_type="text/plain", message_id="a", type="add")
    await app.send("nope")
    await app.send("add", "x", "y")
    await publish_raw(app, b"\xc1", content_type="application/x-msgpack", message_id="b")
    reasons = sorted(text(m.headers[H_REASON]) for m in await dead_letters(app, 4))
    assert reasons == ["invalid-args", "invalid-message", "invalid-message", "unknown-task"]
    assert worker.counters.dead_lettered == 4
    await still_serving(app, 4)
