"""Topology names and arguments, and a simulation of the delay schemes (base 16, and the
binary levels of older versions)."""

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
    assert NAMES.delay_entry == "tq.delay16.8"


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


SCHEMES = [topology.DelayScheme(bits) for bits in (1, 2, 3, 4)]


def test_the_scheme_is_base_16_and_the_legacy_one_binary() -> None:
    assert topology.DELAY.radix == 16 and topology.DELAY.digits == 9
    assert topology.LEGACY_DELAY.radix == 2 and topology.LEGACY_DELAY.digits == DELAY_LEVELS
    for scheme in SCHEMES:
        assert scheme.max_ms == MAX_DELAY_MS


def test_delay_queue_names_and_arguments() -> None:
    scheme = topology.DELAY
    assert scheme.exchange(NAMES, 3) == "tq.delay16.3"
    assert scheme.queue(NAMES, 3, 10) == "tq.delay16.3.10"
    args = scheme.queue_arguments(NAMES, 3, 10, quorum=False)
    assert args == {
        "x-message-ttl": 10 * 16**3,
        "x-dead-letter-exchange": "tq.delay16.2",
        "x-queue-type": "classic",
    }
    # No dead-letter routing key: the message must keep its routing key.
    assert "x-dead-letter-routing-key" not in args
    bottom = scheme.queue_arguments(NAMES, 0, 1, quorum=True)
    assert bottom["x-message-ttl"] == 1 and bottom["x-dead-letter-exchange"] == "tq.delivery"
    assert bottom["x-queue-type"] == "quorum"
    assert bottom["x-dead-letter-strategy"] == "at-least-once"
    assert bottom["x-overflow"] == "reject-publish"


@pytest.mark.parametrize("level", [0, 1, 5, DELAY_LEVELS - 1])
def test_legacy_levels_keep_their_names_and_arguments(level: int) -> None:
    legacy = topology.LEGACY_DELAY
    assert legacy.queue(NAMES, level, 1) == legacy.exchange(NAMES, level) == f"tq.delay.{level}"
    target = "tq.delivery" if level == 0 else f"tq.delay.{level - 1}"
    assert legacy.queue_arguments(NAMES, level, 1, quorum=False) == {
        "x-message-ttl": 2**level,
        "x-dead-letter-exchange": target,
        "x-queue-type": "classic",
    }
    key = legacy.routing_key(5, "q")
    assert key == "0." * 33 + "1.0.1.q"


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"base{s.radix}")
def test_delay_queue_ttls_sum_to_max_delay(scheme: topology.DelayScheme) -> None:
    plan = scheme.declarations(NAMES, quorum=False)
    assert len(plan.queues) == scheme.digits * (scheme.radix - 1)
    # the largest value of every digit: one queue per position, the longest TTL of each
    longest = [args["x-message-ttl"] for name, args in plan.queues if name.endswith(".15")]
    if scheme.radix == 16:
        assert sum(longest) == MAX_DELAY_MS


@pytest.mark.parametrize(
    ("delay", "digits"),
    [
        (0, "0" * 9),
        (1, "0" * 8 + "1"),
        (255, "0" * 7 + "ff"),
        (10_000, "000002710"),
        (MAX_DELAY_MS, "f" * 9),
    ],
)
def test_delay_routing_key(delay: int, digits: str) -> None:
    key = topology.delay_routing_key(delay, "emails")
    words = key.split(".")
    assert len(words) == 10
    assert "".join(words[:-1]) == digits
    assert words[-1] == "emails"
    assert topology.queue_from_delay_key(key) == "emails"
    assert topology.DELAY.delay_of_key(key) == delay


def test_queue_from_a_legacy_key() -> None:
    key = topology.LEGACY_DELAY.routing_key(1234, "orders.3")
    assert topology.queue_from_delay_key(key) == "orders.3"


@pytest.mark.parametrize("delay", [-1, MAX_DELAY_MS + 1, 2**40])
def test_delay_routing_key_out_of_range(delay: int) -> None:
    with pytest.raises(ValueError):
        topology.delay_routing_key(delay, "emails")


def test_delivery_bindings() -> None:
    assert topology.delivery_binding("emails") == "*." * 9 + "emails"
    assert topology.delivery_bindings("orders.3") == [
        "*." * 9 + "orders.3",
        "*." * DELAY_LEVELS + "orders.3",  # the binary levels, for messages sent before
    ]


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


def walk(
    delay: int, queue: str, scheme: topology.DelayScheme = topology.DELAY, names: Names = NAMES
) -> tuple[list[str], int]:
    """Follow a message from its entry exchange to the delivery exchange, through the
    declarations of ``scheme``: the queues it sat in (each one's TTL elapsing, then
    dead-lettering on) and how many exchanges routed it."""
    plan = scheme.declarations(names, quorum=False)
    ttl = {name: args for name, args in plan.queues}
    key = scheme.routing_key(delay, queue)
    exchange = scheme.entry(names, delay)
    visited: list[str] = []
    for exchanges in range(1, 2 * DELAY_LEVELS + 2):  # a bound, in case the bindings loop
        if exchange == names.delivery:
            return visited, exchanges
        into = [q for q, x, pattern in plan.queue_bindings if x == exchange and topic_matches(
            pattern, key)]  # fmt: skip
        onward = [d for d, x, pattern in plan.exchange_bindings if x == exchange and topic_matches(
            pattern, key)]  # fmt: skip
        assert len(into) + len(onward) == 1, f"{key} must match one binding of {exchange}"
        if into:
            visited.append(into[0])
            exchange = ttl[into[0]]["x-dead-letter-exchange"]
        else:
            exchange = onward[0]
    raise AssertionError(f"delay {delay} never reached {names.delivery}")


def waited(scheme: topology.DelayScheme, queues: list[str]) -> int:
    plan = dict(scheme.declarations(NAMES, quorum=False).queues)
    return sum(plan[q]["x-message-ttl"] for q in queues)


def test_walk_zero_delay_goes_straight_through() -> None:
    assert walk(0, "emails") == ([], 2)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"base{s.radix}")
def test_walk_max_delay_visits_every_position(scheme: topology.DelayScheme) -> None:
    queues, exchanges = walk(MAX_DELAY_MS, "emails", scheme)
    assert len(queues) == scheme.digits and exchanges == scheme.digits + 1
    assert waited(scheme, queues) == MAX_DELAY_MS


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"base{s.radix}")
def test_walk_random_delays(scheme: topology.DelayScheme) -> None:
    rng = random.Random(20240506)
    delays = [rng.randrange(MAX_DELAY_MS + 1) for _ in range(60)]
    delays += [rng.randrange(2**16) for _ in range(30)] + [1, 2, 3, 2**35, 2**35 - 1]
    for delay in delays:
        queue = rng.choice(["default", "emails", "a-b_c", "q1", "orders.3"])
        queues, exchanges = walk(delay, queue, scheme)
        assert waited(scheme, queues) == delay
        path = scheme.path(NAMES, delay)
        assert (path.queues, path.exchanges) == (queues, exchanges)
        key = scheme.routing_key(delay, queue)
        assert topic_matches(scheme.delivery_binding(queue), key)
        # ...and only that queue's binding, never another queue's
        assert not topic_matches(scheme.delivery_binding("other"), key)
        assert not topic_matches(scheme.delivery_binding("3"), key)


def test_positions_are_visited_longest_first() -> None:
    # A message waits out its long digits first: the top one is entered first.
    queues, exchanges = walk(0xA01, "q")
    assert queues == ["tq.delay16.2.10", "tq.delay16.0.1"] and exchanges == 4


def test_a_current_key_never_matches_a_legacy_delivery_binding() -> None:
    key = topology.delay_routing_key(1234, "q")
    assert not topic_matches(topology.LEGACY_DELAY.delivery_binding("q"), key)
    old = topology.LEGACY_DELAY.routing_key(1234, "q")
    assert not topic_matches(topology.DELAY.delivery_binding("q"), old)


def test_every_name_covers_what_a_prefix_declares() -> None:
    names = topology.Names("p")
    queues, exchanges = topology.every_name(names, ["default", "emails"])
    assert {"p.q.default", "p.q.default.dead", "p.q.emails", "p.q.emails.dead"} <= set(queues)
    assert {names.delay_level(level) for level in range(topology.DELAY_LEVELS)} <= set(queues)
    assert set(topology.DELAY.queue_names(names)) <= set(queues)
    assert {"p", "p.dlx", "p.delivery", "p.events", "p.control", "p.delay.0"} <= set(exchanges)
    assert {"p.delay16.0", "p.delay16.8"} <= set(exchanges)
