"""Messages whose AMQP properties other clients filled their own way (issue 20, defect 1).

A foreign producer publishes taskq-format messages with a timestamp in milliseconds (what
``Date.now()`` gives), other extreme timestamps, short strings that are not UTF-8 and header
tables taskq cannot decode, between ordinary tasks. Each odd message either runs or lands in
the ``.dead`` queue with a reason naming the property; the ordinary tasks all run; and the
worker's consuming connection is never dropped.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import AsyncIterator

import msgpack
import pytest

from taskq import App, Worker, dlq
from tests.broker_control import connection_pids
from tests.foreign_producer import RawAmqp, raw_amqp, short, table, u64
from tests.support import adding_app, eventually, queue_length, running_worker

MS = 1_733_000_000_000  # Date.now() on 2024-11-30
LONG_NOT_UTF8 = struct.pack(">I", 2) + b"\xff\xfe"  # a long string: pamqp keeps it as bytes

# name -> (the odd properties, which property the dead copy names; None: it runs)
ODD: dict[str, tuple[dict[str, bytes], str | None]] = {
    "timestamp-ms": ({"timestamp": u64(MS)}, None),
    "timestamp-ns": ({"timestamp": u64(MS * 1_000_000)}, None),
    "timestamp-max": ({"timestamp": u64(2**64 - 1)}, None),
    "app-id-not-utf8": ({"app_id": short(b"\xc3(app")}, None),
    "header-bytes-value": ({"headers": table(b"\x01kS" + LONG_NOT_UTF8)}, None),
    "type-not-utf8": ({"type": short(b"\xff\xfeadd")}, "type"),
    "message-id-not-utf8": ({"message_id": short(b"\x80" + uuid.uuid4().bytes)}, "message_id"),
    "header-key-not-utf8": ({"headers": table(b"\x02\xff\xfeF" + struct.pack(">I", 0))}, "headers"),
    "header-timestamp-max": ({"headers": table(b"\x01kT" + u64(2**64 - 1))}, "headers"),
}  # fmt: skip
RUN = [name for name, (_, dead) in ODD.items() if dead is None]
DEAD = [name for name, (_, dead) in ODD.items() if dead is not None]


@pytest.fixture
def runs() -> list[tuple[int, int]]:
    return []


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], runs: list[tuple[int, int]]) -> App:
    return adding_app("foreign", prefix, runs)


@pytest.fixture
async def worker(app: App) -> AsyncIterator[Worker]:
    async with app, running_worker(app) as worker:
        yield worker


async def publish_odd(amqp: RawAmqp, app: App, index: int, name: str) -> None:
    """A valid taskq message for ``add(1000 + index, 1)``, with the odd properties of ``name``."""
    odd, _ = ODD[name]
    props = {
        "content_type": short(b"application/x-msgpack"),
        "message_id": short(f"odd-{name}".encode()),
        "type": short(b"add"),
        **odd,
    }
    body = msgpack.packb([[1000 + index, 1], {}])
    await amqp.publish(app.names.exchange, "default", body, **props)


async def test_odd_properties_fail_alone_and_never_the_connection(
    app: App, worker: Worker, runs: list[tuple[int, int]]
) -> None:
    consuming = f"taskq-worker:{worker.name}:consume"
    (connection,) = connection_pids(consuming)
    handles = []
    async with raw_amqp() as amqp:
        for index, name in enumerate(ODD):
            handles.append(await app.tasks["add"].delay(index, 1))
            await publish_odd(amqp, app, index, name)
        handles.append(await app.tasks["add"].delay(len(ODD), 1))

    # The ordinary tasks all run, before and after every odd message.
    assert [await h.result(timeout=20) for h in handles] == [i + 1 for i in range(len(handles))]
    dead_queue = app.names.dead_queue("default")

    async def settled() -> bool:
        ran = {x for x, _ in runs if x >= 1000}
        return len(ran) == len(RUN) and await queue_length(dead_queue) == len(DEAD)

    await eventually(settled, what=f"{len(RUN)} odd messages run and {len(DEAD)} dead-lettered")
    assert sorted(x - 1000 for x, _ in runs if x >= 1000) == [list(ODD).index(n) for n in RUN]
    dead = await dlq.list_dead(app.transport, "default")
    assert {m.reason for m in dead} == {"invalid-message"}
    assert {m.error_type for m in dead} == {"taskq.exceptions.DecodeError"}
    # Shown as text any terminal prints, the bytes that were not UTF-8 as escapes.
    assert {m.task_name for m in dead} == {"add", "\\xff\\xfeadd"}
    assert all(m.task_id.encode() for m in dead)
    named = sorted(re.findall(r"property (\w+) unreadable", m.error_message)[0] for m in dead)
    assert named == sorted(str(ODD[name][1]) for name in DEAD)
    # The same connection served everything: never dropped and reopened.
    assert connection_pids(consuming) == [connection]
    assert worker.connected
