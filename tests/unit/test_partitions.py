"""Partitioned queues without a broker: names, routes, the choice of a partition, settings,
registration, the depth rows folded into logical queues and the route of a replay."""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

import pytest

from taskq import App, topology
from taskq.dashboard.live import Live
from taskq.dlq import replay_route
from taskq.exceptions import ConfigurationError
from taskq.message import H_PARTITION, Envelope, decode_envelope
from taskq.queue_depths import by_logical_queue, known_queues
from taskq.settings import load_settings
from taskq.topology import DELAY_LEVELS, Names

from .test_topology import topic_matches

UNREACHABLE = "amqp://guest:guest@192.0.2.1:1/"


def test_routes_and_their_inverse() -> None:
    assert topology.routes("orders", 1) == ["orders"]
    assert topology.routes("orders", 3) == ["orders.0", "orders.1", "orders.2"]
    assert topology.split_route("orders.2") == ("orders", 2)
    assert topology.split_route("orders") == ("orders", None)
    assert topology.logical_queue("orders.2") == "orders"
    assert Names("p").work_queue("orders.2") == "p.q.orders.2"


def test_partition_of_is_stable_and_spread() -> None:
    assert topology.partition_of("anything", 1) is None
    # CRC-32, fixed across processes and Python versions (hash() is salted per process)
    assert topology.partition_of("customer-42", 4) == 1  # zlib.crc32(b"customer-42") % 4
    assert topology.partition_of("customer-42", 4) == topology.partition_of(b"customer-42", 4)
    assert topology.partition_of(42, 4) == topology.partition_of("42", 4)
    counts = collections.Counter(topology.partition_of(f"task-{i}", 4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800  # roughly even: 1000 each


def test_delay_key_keeps_the_partition() -> None:
    key = topology.delay_routing_key(1234, "orders.3")
    assert topology.queue_from_delay_key(key) == "orders.3"
    assert topology.queue_from_delay_key(topology.delay_routing_key(5, "q")) == "q"


def test_delivery_bindings_route_each_partition_alone() -> None:
    # "3" and "orders" are valid names of other queues: neither may catch orders.3's key.
    key = topology.delay_routing_key(77, "orders.3")
    assert topic_matches(topology.delivery_binding("orders.3"), key)
    for other in ("3", "orders", "orders.2", "x.orders.3", "b.3"):
        assert not topic_matches(topology.delivery_binding(other), key), other
    plain = topology.delay_routing_key(77, "3")
    assert not topic_matches(topology.delivery_binding("orders.3"), plain)


def test_partitions_share_the_queue_arguments() -> None:
    # Declared with the logical queue's arguments: one .dead queue, leaders spread.
    names = Names("p")
    args = topology.work_queue_arguments(names, "orders", max_priority=10, queue_type="quorum")
    assert args["x-dead-letter-routing-key"] == "orders"
    assert args["x-queue-leader-locator"] == "balanced"


# -- settings and registration -----------------------------------------------------------------


def test_partitions_setting_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PARTITIONS", json.dumps({"orders": 4}))
    settings = load_settings()
    assert settings.partitions_of("orders") == 4
    assert settings.partitions_of("default") == 1


@pytest.mark.parametrize("bad", [{"orders": 0}, {"orders": 10_000}, {"a.b": 2}])
def test_bad_partitions_setting(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(partitions=bad)


def test_task_partitions_become_the_queue_setting() -> None:
    app = App("u", broker=UNREACHABLE)

    @app.task(queue="orders", partitions=4)
    async def place(order: int) -> None: ...

    @app.task(queue="orders")  # the queue's count, without saying it again
    async def cancel(order: int) -> None: ...

    assert app.settings.partitions_of("orders") == 4
    assert place.config.partitions == 4
    app.configure(concurrency=3)  # CLI flags keep it
    assert app.settings.partitions_of("orders") == 4


def test_task_partitions_must_agree() -> None:
    app = App("u", broker=UNREACHABLE, partitions={"orders": 2})
    with pytest.raises(ConfigurationError, match="2 partition"):

        @app.task(queue="orders", partitions=4)
        async def place(order: int) -> None: ...

    @app.task(queue="orders", partitions=2)
    async def agreed(order: int) -> None: ...

    @app.task(queue="other", partitions=3)
    async def first(x: int) -> None: ...

    with pytest.raises(ConfigurationError):

        @app.task(queue="other", partitions=1)
        async def second(x: int) -> None: ...


def test_partition_for_by_key_or_id() -> None:
    app = App("u", broker=UNREACHABLE, partitions={"orders": 4})
    assert app.partition_for("default", "k", "id") is None
    assert app.partition_for("orders", None, "id-1") == topology.partition_of("id-1", 4)
    assert app.partition_for("orders", "cust", "id-1") == topology.partition_of("cust", 4)
    assert {app.partition_for("orders", "cust", f"id-{i}") for i in range(50)} == {
        topology.partition_of("cust", 4)
    }


def test_envelope_route_comes_from_the_delivery() -> None:
    app = App("u", broker=UNREACHABLE)
    sent = Envelope("id", "t", "orders", [], {}, partition=3)
    assert sent.route == "orders.3"
    message = sent.to_message()
    got = decode_envelope(
        body=message.body, content_type=message.content_type, message_id="id",
        task_name="t", headers={}, priority=None, reply_to=None, queue="orders.3",
    )  # fmt: skip
    assert (got.queue, got.partition, got.route) == ("orders", 3, "orders.3")
    assert dataclasses.replace(got, partition=None).route == "orders"
    assert app.names.work_queue(got.route) == "taskq.q.orders.3"


# -- depths and replays ----------------------------------------------------------------------


def test_known_queues_lists_partitions() -> None:
    full = known_queues(Names("p"), ["orders", "mail"], {"orders": 2})
    assert full[:8] == ["p.q.mail", "p.q.mail.dead", "p.hold.mail",
                        "p.q.orders.0", "p.q.orders.1", "p.q.orders.dead",
                        "p.hold.orders.0", "p.hold.orders.1"]  # fmt: skip
    assert len(full) == 8 + 15 * 9 + DELAY_LEVELS  # base-16 delay queues, the old levels


def _row(name: str, ready: int, unacked: int | None, consumers: int) -> dict[str, Any]:
    return {"name": name, "ready": ready, "unacked": unacked, "consumers": consumers}


def test_depth_rows_fold_partitions_into_the_logical_queue() -> None:
    rows = [
        _row("p.q.mail", 1, 0, 2),
        _row("p.q.orders.1", 5, 2, 2),
        _row("p.q.orders.0", 3, 1, 2),
        _row("p.q.orders.2", 0, 0, 0),
        _row("p.q.orders.dead", 7, 0, 0),
        _row("p.delay.3", 4, 0, 0),
    ]
    folded = by_logical_queue(rows, "p")
    assert [r["name"] for r in folded] == [
        "p.q.mail", "p.q.orders", "p.q.orders.dead", "p.delay.3"
    ]  # fmt: skip
    orders = folded[1]
    assert (orders["ready"], orders["unacked"], orders["consumers"]) == (8, 3, 0)
    assert [p["partition"] for p in orders["partitions"]] == [0, 1, 2]
    unknown = by_logical_queue([_row("p.q.o.0", 1, None, 1), _row("p.q.o.1", 1, 1, 1)], "p")
    assert unknown[0]["unacked"] is None  # passive declares do not know unacked


class _Dead:
    def __init__(self, message_id: str, headers: dict[str, Any]) -> None:
        self.message_id = message_id
        self.headers = headers


def test_replay_route() -> None:
    assert replay_route(_Dead("id", {}), "mail", 1) == "mail"  # type: ignore[arg-type]
    back = replay_route(_Dead("id", {H_PARTITION: 2}), "orders", 4)  # type: ignore[arg-type]
    assert back == "orders.2"
    # the queue has fewer partitions now: as a new send would (by task ID)
    fewer = replay_route(_Dead("id", {H_PARTITION: 3}), "orders", 2)  # type: ignore[arg-type]
    assert fewer == f"orders.{topology.partition_of('id', 2)}"


def test_dashboard_shows_one_row_per_logical_queue() -> None:
    live = Live(Names("p"), history_points=10)
    rows = [
        _row("p.q.orders.0", 3, None, 1),
        _row("p.q.orders.1", 4, None, 1),
        _row("p.q.orders.dead", 2, None, 0),
    ]
    live.on_depths(by_logical_queue(rows, "p"), "passive declares", 100.0)
    (queue,) = live.queue_rows()
    assert (queue["queue"], queue["ready"], queue["dead"]) == ("orders", 7, 2)
