"""No producer can stall a worker (issue 20): a property-based fuzz of what a foreign
producer may publish.

Hypothesis draws messages with random AMQP properties (short strings that are not UTF-8,
extreme timestamps, odd priorities and expirations), header tables with every field type
(deeply nested, near the frame size, unknown types) and bodies that are valid taskq messages,
garbage, empty, or msgpack of the wrong shape (tests/fuzz_messages.py). They are published raw
into the work queue of a real worker, with ordinary tasks between them. Every message the
broker confirmed either runs once or is parked in the ``.dead`` queue with a reason; every
ordinary task runs; the worker never gives a delivery back and its consuming connection is
the same one at the end. A message the broker itself refuses (it closes the producer's channel
or connection) was never published: it is counted apart and the producer reconnects.

The long run (10,000 messages) is ``python -m benchmarks.faults --only producer-fuzz``.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import AsyncIterator

import pytest

from taskq import App, Worker, dlq
from taskq.outcome import INVALID_ARGS, INVALID_MESSAGE, UNKNOWN_TASK
from tests.apps import noise
from tests.broker_control import connection_pids
from tests.foreign_producer import RefusalTolerantProducer, short, table
from tests.fuzz_messages import FRAME_MAX, PROBE, FuzzMessage, generate, large_table
from tests.support import eventually, queue_length, running_worker

EXAMPLES = 80  # hypothesis draws them derandomized: the same messages on every run
ORDINARY_EVERY = 5
KINDS = {
    "headers:fields", "headers:deep", "headers:large", "headers:unknown-type",
    "headers:garbage", "body:schema2", "body:schema1", "body:empty", "body:garbage",
    "body:wrong-shape", "body:large",
}  # fmt: skip
# What a worker may park a fuzzed message for; "expired": the message's own expiration
# property ran out in the queue (RabbitMQ dead-letters it, with x-death), or its metadata's.
REASONS = {INVALID_MESSAGE, UNKNOWN_TASK, INVALID_ARGS, "expired"}

# What a producer sends is the subject, not how many queues the worker consumes: one variant
# keeps the test command's time down (each run waits out the broker's silence on some draws).
pytestmark = pytest.mark.one_queue_only


@pytest.fixture
def ran() -> list[int]:
    """The tags of the fuzzed messages that ran, in the order they ran."""
    return []


@pytest.fixture
async def worker(app: App, ran: list[int]) -> AsyncIterator[Worker]:
    """A worker of the conformance ``app`` with the probe task the fuzzed messages call."""

    @app.task(name=PROBE)
    async def probe(tag: int) -> None:
        ran.append(tag)

    async with app, running_worker(app) as worker:
        yield worker


@pytest.fixture
def fuzzed(app: App) -> list[FuzzMessage]:
    strangers = [name for name in app.tasks if name != PROBE]
    return generate(EXAMPLES, exclude=[*strangers, noise.NOISE_TASK])


async def test_no_producer_stalls_a_worker(
    app: App, worker: Worker, ran: list[int], fuzzed: list[FuzzMessage]
) -> None:
    consuming = f"taskq-worker:{worker.name}:consume"
    (connection,) = connection_pids(consuming)
    published: list[int] = []
    refused: collections.Counter[str] = collections.Counter()
    handles = []
    async with RefusalTolerantProducer() as producer:
        for tag, message in enumerate(fuzzed):
            if tag % ORDINARY_EVERY == 0:
                handles.append(await app.tasks["add"].delay(tag, 1))
            why = await producer.publish(app.names.exchange, "default", message.body,
                                         message.properties)  # fmt: skip
            if why is None:
                published.append(tag)
            else:
                refused[why.split(" - ")[0]] += 1
    handles.append(await app.tasks["add"].delay(len(fuzzed), 1))

    # The ordinary tasks all run, between the fuzzed ones.
    expected = [tag + 1 for tag in range(0, len(fuzzed), ORDINARY_EVERY)] + [len(fuzzed) + 1]
    assert [await h.result(timeout=30) for h in handles] == expected
    dead_queue = app.names.dead_queue("default")

    async def settled() -> bool:
        accounted = len(ran) + await queue_length(dead_queue)
        idle = not worker.active and not worker.reserved
        return accounted >= len(published) and idle and not await queue_length(worker_queue)

    worker_queue = app.names.work_queue("default")
    await eventually(
        settled, timeout=60, what=f"{len(published)} fuzzed messages run or dead-lettered"
    )
    dead = await dlq.list_dead(app.transport, "default")
    # Each confirmed message ran once or was parked with a reason; a refused one did neither.
    assert len(ran) + len(dead) == len(published), (len(ran), len(dead), published, refused)
    assert len(set(ran)) == len(ran) and set(ran) <= set(published)
    reasons = collections.Counter(m.reason for m in dead)
    assert set(reasons) <= REASONS, reasons
    assert all(m.error_message for m in dead if m.worker is not None)
    assert ran and dead and len(published) > len(fuzzed) // 2, (len(ran), reasons, refused)
    # The worker never gave a delivery back, and the same connection served everything.
    assert worker.counters.requeued == 0
    assert connection_pids(consuming) == [connection]
    assert worker.connected


# Header tables the broker accepts and the worker decodes, but that could not go out again
# with the dead-letter headers added: a long string that is not UTF-8, a double beyond a
# float's range, and a table that fills a frame (found by the fuzz: the worker's publish
# connection was closed with FRAME_ERROR, and the message given back, forever).
UNSENDABLE = {
    "bytes": table(b"\x01kS" + struct.pack(">I", 2) + b"\xff\xfe"),
    "double": table(b"\x01kd" + struct.pack(">d", 1e300)),
    "full-frame": large_table(FRAME_MAX - 120),  # no room for the dead-letter headers
}


async def test_headers_that_cannot_go_out_again_never_stall_the_worker(
    app: App, worker: Worker
) -> None:
    consuming = f"taskq-worker:{worker.name}:consume"
    (connection,) = connection_pids(consuming)
    async with RefusalTolerantProducer() as producer:
        for name, headers in UNSENDABLE.items():
            props = {"content_type": short(b"text/plain"), "message_id": short(name.encode()),
                     "type": short(PROBE.encode()), "headers": headers}  # fmt: skip
            assert await producer.publish(app.names.exchange, "default", b"x", props) is None
    dead_queue = app.names.dead_queue("default")

    async def parked() -> bool:
        return await queue_length(dead_queue) == len(UNSENDABLE)

    await eventually(parked, what="every message with unsendable headers dead-lettered")
    dead = {m.task_id: m for m in await dlq.list_dead(app.transport, "default")}
    assert set(dead) == set(UNSENDABLE)
    assert {m.reason for m in dead.values()} == {INVALID_MESSAGE}
    # Kept as they came where they fit; dropped, and said so, where they do not.
    assert "headers were dropped" not in dead["bytes"].error_message
    assert "headers were dropped" in dead["full-frame"].error_message
    assert worker.counters.requeued == 0
    assert connection_pids(consuming) == [connection]
    assert connection_pids(f"taskq-worker:{worker.name}:publish") != []
