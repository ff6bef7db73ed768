"""Topology names and arguments, and a simulation of the binary delay levels."""

from __future__ import annotations

import random

import pytest

from taskq import topology
from taskq.topology import DELAY_LEVELS, MAX_DELAY_MS, Names

NAMES = Names("tq")


def test_names() -> None:
    assert NAMES.exchange == "tq"
    assert NAMES.dlx == "tq.dlx"
    assert NAMES.delivery == "tq.delivery"
    assert NAMES.events == "tq.events"
    assert NAMES.control == "tq.control"
    assert NAMES.work_queue("emails") == "tq.q.emails"
    assert NAMES.dead_queue("emails") == "tq.q.emails.dead"
    assert NAMES.delay_level(0) == "tq.delay.0"
    assert NAMES.delay_level(7) == "tq.delay.7"
    assert NAMES.delay_entry == f"tq.delay.{DELAY_LEVELS - 1}"


def test_limits() -> None:
    assert DELAY_LEVELS == 36
    assert MAX_DELAY_MS == 2**36 - 1
    assert pytest.approx(MAX_DELAY_MS / 1000) == topology.MAX_DELAY_SECONDS
    assert topology.MAX_DELAY_SECONDS > 794 * 86400


def test_classic_work_queue_arguments() -> None:
    args = topology.work_queue_arguments(NAMES, "emails", max_priority=10, queue_type="classic")
    assert args == {
        "x-dead-letter-exchange": "tq.dlx",
        "x-dead-letter-routing-key": "emails",
        "x-max-priority": 10,
    }


def test_quorum_work_queue_arguments() -> None:
    args = topology.work_queue_arguments(NAMES, "emails", max_priority=10, queue_type="quorum")
    assert args["x-queue-type"] == "quorum"
    # RabbitMQ 3.10 refuses x-max-priority on quorum queues.
    assert "x-max-priority" not in args
    # RabbitMQ 4.x drops a quorum message after 20 redeliveries unless a DLX is set.
    assert args["x-dead-letter-exchange"] == "tq.dlx"
    assert args["x-dead-letter-routing-key"] == "emails"
    # ...and taskq sets the limit itself, dead-lettering at least once (never dropping).
    assert args["x-delivery-limit"] == topology.QUORUM_DELIVERY_LIMIT
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"
    assert args["x-queue-leader-locator"] == "balanced"


def test_dead_queue_arguments() -> None:
    args = topology.dead_queue_arguments()
    assert args == {"x-queue-type": "classic"}
    assert "x-dead-letter-exchange" not in args
    quorum = topology.dead_queue_arguments("quorum")
    assert quorum["x-queue-type"] == "quorum"
    assert "x-dead-letter-exchange" not in quorum


def test_reply_queue_arguments() -> None:
    assert topology.reply_queue_arguments(2.5) == {"x-queue-type": "classic", "x-expires": 2500}
    assert topology.reply_queue_arguments(2.5, quorum=True)["x-queue-type"] == "quorum"


def test_beat_queues_follow_the_work_queues_type() -> None:
    assert topology.beat_lease_arguments()["x-queue-type"] == "classic"
    lease = topology.beat_lease_arguments(quorum=True)
    assert lease["x-queue-type"] == "quorum" and lease["x-single-active-consumer"] is True
    status = topology.beat_status_arguments(quorum=True)
    assert status["x-queue-type"] == "quorum" and status["x-max-length"] == 1


@pytest.mark.parametrize("level", [0, 1, 5, DELAY_LEVELS - 1])
def test_classic_delay_level_arguments(level: int) -> None:
    args = topology.delay_level_arguments(NAMES, level, quorum=False)
    target = "tq.delivery" if level == 0 else f"tq.delay.{level - 1}"
    assert args == {
        "x-message-ttl": 2**level,
        "x-dead-letter-exchange": target,
        "x-queue-type": "classic",
    }
    # No dead-letter routing key: the message must keep its binary routing key.
    assert "x-dead-letter-routing-key" not in args


@pytest.mark.parametrize("level", [0, 3, DELAY_LEVELS - 1])
def test_quorum_delay_level_arguments(level: int) -> None:
    args = topology.delay_level_arguments(NAMES, level, quorum=True)
    assert args["x-message-ttl"] == 2**level
    assert args["x-dead-letter-exchange"] == (
        "tq.delivery" if level == 0 else f"tq.delay.{level - 1}"
    )
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-strategy"] == "at-least-once"
    assert args["x-overflow"] == "reject-publish"
    assert "x-dead-letter-routing-key" not in args


def test_delay_level_ttls_sum_to_max_delay() -> None:
    total = sum(
        topology.delay_level_arguments(NAMES, level, quorum=False)["x-message-ttl"]
        for level in range(DELAY_LEVELS)
    )
    assert total == MAX_DELAY_MS


@pytest.mark.parametrize(
    ("delay", "bits"),
    [
        (0, "0" * 36),
        (1, "0" * 35 + "1"),
        (2, "0" * 34 + "10"),
        (5, "0" * 33 + "101"),
        (1000, format(1000, "036b")),
        (MAX_DELAY_MS, "1" * 36),
    ],
)
def test_delay_routing_key(delay: int, bits: str) -> None:
    key = topology.delay_routing_key(delay, "emails")
    words = key.split(".")
    assert len(words) == DELAY_LEVELS + 1
    assert "".join(words[:-1]) == bits
    assert words[-1] == "emails"
    assert topology.queue_from_delay_key(key) == "emails"


@pytest.mark.parametrize("delay", [-1, MAX_DELAY_MS + 1, 2**40])
def test_delay_routing_key_out_of_range(delay: int) -> None:
    with pytest.raises(ValueError):
        topology.delay_routing_key(delay, "emails")


def test_delivery_binding() -> None:
    assert topology.delivery_binding("emails") == "*." * DELAY_LEVELS + "emails"
    assert topology.delivery_binding("orders.3") == "*." * DELAY_LEVELS + "orders.3"


# -- a pure model of RabbitMQ topic routing, and a walk through the delay levels ---------------


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ topic semantics: words split on '.', '*' is one word, '#' zero or more."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("*.a", "x.a", True),
        ("*.a", "a", False),
        ("*.a", "x.y.a", False),
        ("#.a", "a", True),
        ("#.a", "x.y.a", True),
        ("#.a", "x.y.b", False),
        ("1.#", "1", True),
        ("1.#", "1.0.q", True),
        ("1.#", "0.1.q", False),
    ],
)
def test_topic_model(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def walk(delay: int, queue: str, names: Names = NAMES) -> tuple[list[int], str]:
    """Follow a message from the delay entry exchange to the exchange that routes it to a queue.

    Returns the levels whose queues the message sat in (each one's TTL elapsing, then
    dead-lettering to the exchange below) and the final exchange reached.
    """
    key = topology.delay_routing_key(delay, queue)
    levels_by_exchange = {names.delay_level(level): level for level in range(DELAY_LEVELS)}
    exchange = names.delay_entry
    visited: list[int] = []
    for _ in range(2 * DELAY_LEVELS + 2):  # a bound, in case the bindings loop
        if exchange == names.delivery:
            return visited, exchange
        level = levels_by_exchange[exchange]
        (queue_name, queue_pattern), (below, below_pattern) = topology.delay_level_bindings(
            names, level
        )
        to_queue = topic_matches(queue_pattern, key)
        onward = topic_matches(below_pattern, key)
        assert to_queue != onward, f"key {key} must match exactly one binding of level {level}"
        if to_queue:
            assert queue_name == names.delay_level(level)
            visited.append(level)
            exchange = topology.delay_level_arguments(names, level, quorum=False)[
                "x-dead-letter-exchange"
            ]
        else:
            exchange = below
    raise AssertionError(f"delay {delay} never reached {names.delivery}")


def test_walk_zero_delay_goes_straight_through() -> None:
    assert walk(0, "emails") == ([], "tq.delivery")


def test_walk_max_delay_visits_every_level() -> None:
    levels, exchange = walk(MAX_DELAY_MS, "emails")
    assert levels == list(range(DELAY_LEVELS - 1, -1, -1))
    assert exchange == "tq.delivery"


def test_walk_random_delays() -> None:
    rng = random.Random(20240506)
    delays = [rng.randrange(MAX_DELAY_MS + 1) for _ in range(300)]
    delays += [rng.randrange(2**16) for _ in range(100)] + [1, 2, 3, 2**35, 2**35 - 1]
    for delay in delays:
        queue = rng.choice(["default", "emails", "a-b_c", "q1"])
        levels, exchange = walk(delay, queue)
        expected = [level for level in range(DELAY_LEVELS - 1, -1, -1) if delay >> level & 1]
        assert levels == expected, delay
        ttl_total = sum(
            topology.delay_level_arguments(NAMES, level, quorum=False)["x-message-ttl"]
            for level in levels
        )
        assert ttl_total == delay
        assert exchange == NAMES.delivery
        key = topology.delay_routing_key(delay, queue)
        assert topic_matches(topology.delivery_binding(queue), key)
        # ...and only that queue's binding, never another queue's
        assert not topic_matches(topology.delivery_binding("other"), key)


def test_levels_are_visited_longest_first() -> None:
    # A message waits out its long levels first: the top level is entered first.
    levels, _ = walk(0b1010_0000_0001, "q")
    assert levels == [11, 9, 0]


def test_every_name_covers_what_a_prefix_declares() -> None:
    names = topology.Names("p")
    queues, exchanges = topology.every_name(names, ["default", "emails"])
    assert {"p.q.default", "p.q.default.dead", "p.q.emails", "p.q.emails.dead"} <= set(queues)
    assert {names.delay_level(level) for level in range(topology.DELAY_LEVELS)} <= set(queues)
    assert {"p", "p.dlx", "p.delivery", "p.events", "p.control", "p.delay.0"} <= set(exchanges)
