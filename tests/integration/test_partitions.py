"""Partitioned queues against the real broker: where sends land (by task ID, by key), a worker
that consumes every partition (next to a plain queue), per-key order, retries and delays that
stay in their partition, the one ``.dead`` queue and replays, per-partition prefetch, and the
admin tools that show one logical queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from taskq import App, Reject, Retry, current, dlq
from taskq.message import H_PARTITION
from taskq.topology import partition_of
from tests.support import BROKER, eventually, queue_messages, run_taskq, running_worker

K = 4
ROUTES = [f"orders.{i}" for i in range(K)]
Seen = list[tuple[str, int, int | None, int]]
"""(key, n, partition, attempt) of every run, in the order they ran."""


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
def flags() -> dict[str, Any]:
    return {"reject": True, "gate": asyncio.Event()}


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], seen: Seen, flags: dict[str, Any]) -> App:
    topology_cleanup.update({"orders", *ROUTES})
    app = App("parts", broker=BROKER, prefix=prefix, prefetch=6)

    def note(key: str, n: int) -> None:
        ctx = current()
        seen.append((key, n, ctx.partition, ctx.attempt))

    @app.task(queue="orders", partitions=K)
    async def place(key: str, n: int) -> int:
        note(key, n)
        return n

    @app.task(queue="orders")
    async def flaky(key: str) -> None:
        note(key, 0)
        if current().attempt == 1:
            raise Retry(0.05)  # through the delay levels

    @app.task(queue="orders")
    async def doomed(key: str) -> None:
        note(key, 0)
        if flags["reject"]:
            raise Reject("not today")

    @app.task(queue="orders")
    async def gated(n: int) -> None:
        note("gated", n)
        await flags["gate"].wait()

    @app.task
    async def plain(n: int) -> int:
        note("plain", n)
        return n

    return app


def _ids(messages: list[Any]) -> list[str]:
    return [m.message_id for m in messages]


async def test_sends_land_by_task_id_or_by_key(app: App, prefix: str) -> None:
    place = app.tasks["place"]
    async with app:
        by_id = [await place.options(task_id=f"id-{i}").delay("x", i) for i in range(40)]
        keyed = [await place.options(partition_key="cust-7").delay("k", i) for i in range(10)]
        held = {r: _ids(await queue_messages(prefix, app.names.work_queue(r))) for r in ROUTES}
        for handle in by_id:
            assert handle.id in held[f"orders.{partition_of(handle.id, K)}"]
        assert all(held.values()), "40 task IDs fill every partition"
        home = held[f"orders.{partition_of('cust-7', K)}"]
        keyed_ids = [h.id for h in keyed]
        assert [i for i in home if i in keyed_ids] == keyed_ids  # one partition, in send order
        transport = app.transport
        assert await transport.queue_depth(app.names.work_queue("orders")) is None
        assert await transport.queue_depth(app.names.dead_queue("orders")) is not None
        assert await transport.queue_depth(app.names.dead_queue("orders.0")) is None


async def test_worker_serves_every_partition_and_a_plain_queue_in_key_order(
    app: App, seen: Seen
) -> None:
    place, plain = app.tasks["place"], app.tasks["plain"]
    async with app:
        calls: list[Any] = []
        for n in range(30):
            calls += [(place.options(partition_key="A"), ("A", n)),
                      (place.options(partition_key="B"), ("B", n))]  # fmt: skip
        calls += [(place.options(task_id=f"free-{n}"), ("free", n)) for n in range(20)]
        calls += [(plain, (n,)) for n in range(10)]
        await app.send_many(calls)
        async with running_worker(app, queues=["default", "orders"], concurrency=1) as worker:

            async def all_ran() -> bool:
                return len(seen) >= 90

            await eventually(all_ran, timeout=30, what="every task to run")
            stats = worker.stats()
    for key in ("A", "B"):
        runs = [s for s in seen if s[0] == key]
        assert [n for _, n, _, _ in runs] == list(range(30)), f"key {key} out of order"
        assert {p for _, _, p, _ in runs} == {partition_of(key, K)}
    assert {p for k, _, p, _ in seen if k == "free"} == set(range(K))
    assert sorted(n for k, n, p, _ in seen if k == "plain" and p is None) == list(range(10))
    # prefetch 6 over 4 partitions: ceil(6/4) = 2 each, the plain queue 6
    assert stats["prefetch_total"] == 6 * (len(stats["queues"]) - 1) + 2 * K


async def test_retries_and_delays_stay_in_their_partition(app: App, seen: Seen) -> None:
    flaky, place = app.tasks["flaky"], app.tasks["place"]
    async with app, running_worker(app, queues=["orders"]):
        keys = [f"retry-{i}" for i in range(6)]
        for key in keys:
            await flaky.options(partition_key=key).delay(key)
        later = await place.options(partition_key="late", countdown=0.1).delay("late", 1)
        await later.result(timeout=15)

        async def retried() -> bool:
            return len([s for s in seen if s[0].startswith("retry-") and s[3] == 2]) == 6

        await eventually(retried, timeout=15, what="every retry to run")
    for key in keys:
        parts = {(attempt, p) for k, _, p, attempt in seen if k == key}
        assert parts == {(1, partition_of(key, K)), (2, partition_of(key, K))}, key
    assert [p for k, _, p, _ in seen if k == "late"] == [partition_of("late", K)]


async def test_one_dead_queue_and_replay_to_the_partition(
    app: App, prefix: str, seen: Seen, flags: dict[str, Any]
) -> None:
    doomed = app.tasks["doomed"]
    home = partition_of("D", K)
    async with app, running_worker(app, queues=["orders"]):
        await doomed.options(partition_key="D").delay("D")
        await doomed.options(partition_key="E").delay("E")

        async def both_dead() -> list[Any]:
            dead = await queue_messages(prefix, app.names.dead_queue("orders"))
            return dead if len(dead) == 2 else []

        dead = await eventually(both_dead, what="both tasks in orders.dead")
        assert {m.headers[H_PARTITION] for m in dead} == {home, partition_of("E", K)}
        flags["reject"] = False
        replayed = await dlq.replay(app.sender, "orders", dlq.selector(everything=True))
        assert len(replayed) == 2

        async def ran_again() -> bool:
            return len([s for s in seen if s[0] in "DE"]) == 4

        await eventually(ran_again, what="the replays to run")
    assert [p for k, _, p, _ in seen if k == "D"] == [home, home]


async def test_prefetch_is_shared_out_over_the_partitions(
    app: App, seen: Seen, flags: dict[str, Any]
) -> None:
    gated = app.tasks["gated"]
    ids = [f"gate-{n}" for n in range(24)]
    sizes = {r: 0 for r in ROUTES}
    for task_id in ids:
        sizes[f"orders.{partition_of(task_id, K)}"] += 1
    assert min(sizes.values()) >= 3
    async with app, running_worker(app, queues=["orders"], concurrency=1):
        for n, task_id in enumerate(ids):
            await gated.options(task_id=task_id).delay(n)

        async def held_back() -> dict[str, int] | None:
            ready = {}
            for route in ROUTES:
                depth = await app.transport.queue_depth(app.names.work_queue(route))
                assert depth is not None
                ready[route] = depth.messages
            # ceil(6 / 4) = 2 unacked per partition: one runs, the rest wait reserved
            return ready if ready == {r: sizes[r] - 2 for r in ROUTES} else None

        await eventually(held_back, what="2 deliveries held per partition")
        flags["gate"].set()

        async def all_ran() -> bool:
            return len([s for s in seen if s[0] == "gated"]) == len(ids)

        await eventually(all_ran, what="every gated task to run")


@pytest.mark.one_queue_only
async def test_queues_and_inspect_show_the_logical_queue(app: App, prefix: str) -> None:
    place = app.tasks["place"]
    async with app:
        await app.send_many([(place.options(task_id=f"q-{n}"), ("q", n)) for n in range(12)])
        await place.options(countdown=300, partition_key="later").delay("later", 0)
    env = {"TASKQ_PARTITIONS": json.dumps({"orders": K})}
    code, out, _ = await run_taskq(prefix, "queues", "--json", "--queue", "orders", env=env)
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)["queues"]}
    orders = rows[app.names.work_queue("orders")]
    assert orders["ready"] == 12
    assert [p["partition"] for p in orders["partitions"]] == list(range(K))
    assert sum(p["ready"] for p in orders["partitions"]) == 12
    assert not any(name.startswith(app.names.work_queue("orders.")) for name in rows
                   if not name.endswith(".dead"))  # fmt: skip
    code, out, _ = await run_taskq(prefix, "queues", "--partitions", "--queue", "orders", env=env)
    assert f"{app.names.work_queue('orders')} (4 partitions)" in out
    assert f"  {app.names.work_queue('orders.3')}" in out
    code, out, _ = await run_taskq(prefix, "inspect", "scheduled", "--peek", "5", "--json")
    assert code == 0
    peeked = json.loads(out)["peeked"]
    assert [p["queue"] for p in peeked] == ["orders"]
