"""Global concurrency limits against the real broker (taskq.limits.concurrency): at most N
runs at once per key, whichever worker runs them; other keys are not held up; a worker that
dies frees its slots (the broker deletes its exclusive queues with its connection)."""

from __future__ import annotations

import asyncio
import collections
import inspect
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taskq import App, ConfigurationError, InvalidArguments, TaskStatus
from taskq.limits import ConcurrencyLimit
from taskq.limits.concurrency import slot_queue
from taskq.topology import Names
from tests.support import BROKER, WorkerProcess, eventually, running_worker

DEADLINE = 30.0


class Overlap:
    """Runs in progress per key, and the most seen at once."""

    def __init__(self) -> None:
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.ran: list[str] = []

    def enter(self, key: str) -> None:
        self.now[key] += 1
        self.most[key] = max(self.most[key], self.now[key])

    def leave(self, key: str) -> None:
        self.now[key] -= 1
        self.ran.append(key)


class Order:
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id


def make_app(prefix: str, overlap: Overlap, release: asyncio.Event) -> App:
    app = App("concurrency", broker=BROKER, prefix=prefix)

    @app.task(concurrency_limit=2, concurrency_key=lambda customer: customer)
    async def work(customer: str, seconds: float = 0.05) -> str:
        overlap.enter(customer)
        try:
            await asyncio.sleep(seconds)
        finally:
            overlap.leave(customer)
        return customer

    @app.task(concurrency_limit=1, concurrency_key=lambda customer: customer)
    async def blocking(customer: str) -> str:
        overlap.enter(customer)
        try:
            await release.wait()
        finally:
            overlap.leave(customer)
        return customer

    return app


@pytest.fixture
def overlap() -> Overlap:
    return Overlap()


@pytest.fixture
async def app(prefix: str, topology_cleanup: set[str], overlap: Overlap) -> AsyncIterator[App]:
    yield make_app(prefix, overlap, asyncio.Event())


def test_the_key_function_gets_the_arguments_it_names() -> None:
    async def process(order: Order, note: str = "n") -> None: ...

    limit = ConcurrencyLimit.of(5, lambda order: order.customer_id, process)
    signature = inspect.signature(process)
    assert limit.key_of(signature, (Order("c1"),), {}) == "c1"
    assert limit.key_of(signature, (), {"order": Order("c2"), "note": "x"}) == "c2"
    assert ConcurrencyLimit.of(5, lambda note: note, process).key_of(signature, (1,), {}) == "n"
    assert ConcurrencyLimit.of(3, None, process).key_of(signature, (1,), {}) == "all"
    with pytest.raises(InvalidArguments, match="concurrency_key raised"):
        limit.key_of(signature, (None,), {})  # None has no customer_id
    with pytest.raises(ConfigurationError, match="customer"):
        ConcurrencyLimit.of(5, lambda customer: customer, process)
    for bad in (0, -1, True, "5"):
        with pytest.raises(ConfigurationError):
            ConcurrencyLimit.of(bad, None, process)  # type: ignore[arg-type]


def test_odd_keys_make_valid_queue_names() -> None:
    names = Names("p")
    assert slot_queue(names, "t", "cust-1", 0) == "p.slot.t.cust-1.0"
    odd = slot_queue(names, "t", "a b/ü" * 100, 2)
    assert len(odd.encode()) < 255 and odd.endswith(".2") and " " not in odd


async def test_a_key_never_runs_more_than_its_limit_across_workers(
    app: App, overlap: Overlap
) -> None:
    work = app.tasks["work"]
    async with app, running_worker(app) as one, running_worker(app) as two:
        handles = [
            await work.delay(customer, 0.1) for _ in range(6) for customer in ("a", "b", "c")
        ]
        for handle in handles:
            await handle.result(timeout=DEADLINE)
        assert [(await h.info()).attempt for h in handles] == [1] * len(handles)
        assert one.counters.deferred + two.counters.deferred > 0  # the limit was reached
        assert one.counters.failed == two.counters.failed == 0
    assert overlap.most == {"a": 2, "b": 2, "c": 2}


async def test_other_keys_are_not_held_up(prefix: str, topology_cleanup: set[str]) -> None:
    overlap, release = Overlap(), asyncio.Event()
    app = make_app(prefix, overlap, release)
    blocking = app.tasks["blocking"]
    async with app, running_worker(app) as worker:
        held = await blocking.delay("a")
        waiting = await blocking.delay("a")

        async def a_waits() -> bool:
            return overlap.now["a"] == 1 and worker.counters.deferred > 0

        await eventually(a_waits, what="one run of key a, and the other deferred")
        # Key a is full; key b runs at once, on the same worker.
        assert await (await app.tasks["work"].delay("b")).result(timeout=DEADLINE) == "b"
        assert await waiting.status() is TaskStatus.PENDING
        release.set()
        assert [await h.result(timeout=DEADLINE) for h in (held, waiting)] == ["a", "a"]
    assert overlap.most["a"] == 1


@pytest.mark.one_queue_only
async def test_a_killed_worker_frees_its_slot(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    client = App("client", broker=BROKER, prefix=prefix)
    process = WorkerProcess("tests.apps.limitsapp:app", prefix)
    try:
        await process.wait_ready()
        async with client:
            await client.send("hold", "k", str(marker))

            async def started() -> bool:
                return marker.exists()

            await eventually(started, timeout=DEADLINE, what="the task to hold its slot")
            slot = slot_queue(client.names, "hold", "k", 0)
            # Nobody else may take the slot while the worker holds it.
            assert not await client.transport.claim(slot)
            process.signal(signal.SIGKILL)
            killed = time.monotonic()

            async def freed() -> bool:
                return await client.transport.claim(slot)  # then this connection holds it

            await eventually(freed, timeout=DEADLINE, interval=0.01, what="the slot to be freed")
            print(f"slot freed {time.monotonic() - killed:.3f} s after SIGKILL")
            await client.transport.delete_queue(slot)
    finally:
        process.kill()
