"""Names and arguments of every exchange and queue taskq declares. Pure: no I/O.

============================ ============== ================================================
name                          kind           purpose
============================ ============== ================================================
``{p}``                       direct         task routing; routing key = queue name
``{p}.q.{queue}``             queue          work queue (classic priority, or quorum)
``{p}.q.{queue}.{i}``         queue          partition i of a partitioned work queue
``{p}.dlx``                   direct         dead-letter exchange of every work queue
``{p}.q.{queue}.dead``        queue          what finally failed, reason in headers
``{p}.delay.{L}``             topic + queue  delay level L, TTL 2**L ms, dead-letters to L-1
``{p}.delivery``              topic          routes what leaves level 0 to its work queue
``{p}.events``                topic          task and worker events
``{p}.control``               fanout         inspect / ping broadcast
``{p}.beat.lease``            queue          periodic schedulers: single active consumer,
                                             holds the state record (taskq.periodic)
``{p}.beat.status``           queue          the latest state record, for ``beat list``
============================ ============== ================================================

A queue with k > 1 partitions (see :func:`routes`) is k work queues ``{queue}.0`` ...
``{queue}.{k-1}`` (their routing keys: the route), with one ``.dead`` queue for all of them.
Queue names have no dots, so the one dot of a route always separates the partition number.

Delays are written in binary into the routing key: ``b35.b34. ... .b0.{route}``. A message
passes through level queue L only if bit L is set; each level queue has one fixed TTL, so
RabbitMQ's head-first expiry is exact and a long delay never holds back a short one.
The unit is one millisecond and there are 36 levels: the longest delay is 2**36 - 1 ms
(about 795 days).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable
from typing import Any, Literal

from .exceptions import ConfigurationError

DELAY_LEVELS = 36
DELAY_UNIT_SECONDS = 0.001
MAX_DELAY_MS = 2**DELAY_LEVELS - 1
MAX_DELAY_SECONDS = MAX_DELAY_MS * DELAY_UNIT_SECONDS

QueueType = Literal["classic", "quorum"]

MAX_NAME_BYTES = 255
"""AMQP short strings (names, routing keys, message IDs, types) hold 255 bytes of UTF-8."""


def check_amqp_name(name: str, what: str) -> str:
    """Return ``name`` if it fits an AMQP short string, else raise ConfigurationError."""
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise ConfigurationError(
            f"{what} is {size} bytes of UTF-8, longer than AMQP allows ({MAX_NAME_BYTES}): "
            f"{name[:40]!r}..."
        )
    return name


@dataclasses.dataclass(frozen=True, slots=True)
class Names:
    """Every entity name for one prefix."""

    prefix: str

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def delivery(self) -> str:
        return f"{self.prefix}.delivery"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def revocations(self) -> str:
        """The stream queue of cancels (see taskq.cancel)."""
        return f"{self.prefix}.revocations"

    def work_queue(self, queue: str) -> str:
        return f"{self.prefix}.q.{queue}"

    def dead_queue(self, queue: str) -> str:
        return f"{self.prefix}.q.{queue}.dead"

    def reply_queue(self, client: str) -> str:
        """The reply queue of one client (the AMQP result store of one open App)."""
        return f"{self.prefix}.reply.{client}"

    @property
    def beat_lease(self) -> str:
        """The periodic schedulers' lease queue (see taskq.transport.lease)."""
        return f"{self.prefix}.beat.lease"

    @property
    def beat_status(self) -> str:
        """The mirror of the schedulers' latest state record."""
        return f"{self.prefix}.beat.status"

    def delay_level(self, level: int) -> str:
        """Name of the exchange and of the queue of delay level ``level``."""
        return f"{self.prefix}.delay.{level}"

    @property
    def delay_entry(self) -> str:
        """The top level's exchange: any delay routing key may be published to it."""
        return self.delay_level(DELAY_LEVELS - 1)

    def delay_exchange(self, delay_ms: int) -> str:
        """The exchange to publish a message delayed by ``delay_ms`` to: the level of its
        highest set bit. The levels above would only pass it down (their bits are 0), and
        each exchange-to-exchange hop is routing work for the broker on every publish
        (entering at the top made delayed publishes 5-9x slower than direct ones)."""
        return self.delay_level(max(0, delay_ms.bit_length() - 1))


def every_name(names: Names, queues: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(queues, exchanges)``: every entity taskq may declare for ``queues`` under one prefix
    (what to delete to remove a prefix's topology). Name partitions by their routes
    (``orders.0``...): a route's work queue is ``{p}.q.{route}``."""
    queue_names = [n for q in queues for n in (names.work_queue(q), names.dead_queue(q))]
    levels = [names.delay_level(level) for level in range(DELAY_LEVELS)]
    fixed = [names.exchange, names.dlx, names.delivery, names.events, names.control]
    leases = [names.beat_lease, names.beat_status]
    return queue_names + levels + leases + [names.revocations], levels + fixed


REVOCATION_SEGMENT_BYTES = 1_000_000
"""Segment size of the revocations stream. A stream drops messages a whole segment at a time
(once its newest message is older than ``x-max-age``); the default segment of 500 MB would
keep every revocation forever in practice."""


def revocation_stream_arguments(expiry: float) -> dict[str, Any]:
    """Arguments of the revocations stream: a stream queue (RabbitMQ 3.9+, no plugin) whose
    messages every reader gets from the start, kept ``expiry`` seconds (the
    ``revocation_expiry`` setting; workers also ignore revocations older than that)."""
    return {
        "x-queue-type": "stream",
        "x-max-age": f"{max(1, int(expiry))}s",
        "x-stream-max-segment-size-bytes": REVOCATION_SEGMENT_BYTES,
    }


QUORUM_DELIVERY_LIMIT = 100
"""``x-delivery-limit`` of quorum work queues. taskq counts deliveries itself (its
``max_deliveries`` setting parks a crash loop long before); the broker's limit is a backstop
set explicitly because RabbitMQ 4.x applies a default of 20, and a message that reaches it is
dead-lettered into the ``.dead`` queue (reason ``delivery_limit``), never dropped."""

_QUORUM_DEAD_LETTERING = {
    # A dead-lettered message leaves the quorum queue only once the target confirmed it.
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
}


def _quorum_arguments() -> dict[str, Any]:
    # Leaders spread over the cluster's nodes as queues are declared, not all on the node
    # the declaring client happens to be connected to.
    return {"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"}


def work_queue_arguments(
    names: Names, queue: str, *, max_priority: int, queue_type: QueueType
) -> dict[str, Any]:
    """Arguments of a work queue. Every queue gets a dead-letter exchange: on RabbitMQ 4.x a
    quorum queue without one drops a message after 20 redeliveries. Quorum queues have no
    priorities on RabbitMQ 3.x (4.x has two levels), so they get no ``x-max-priority``."""
    args: dict[str, Any] = {
        "x-dead-letter-exchange": names.dlx,
        "x-dead-letter-routing-key": queue,
    }
    if queue_type == "quorum":
        args.update(_quorum_arguments())
        args.update(_QUORUM_DEAD_LETTERING)
        args["x-delivery-limit"] = QUORUM_DELIVERY_LIMIT
    else:
        args["x-max-priority"] = max_priority
    return args


def dead_queue_arguments(queue_type: QueueType = "classic") -> dict[str, Any]:
    """Arguments of a ``.dead`` queue: durable, of the type of its work queue (a quorum work
    queue's failures survive the loss of a node too); nothing dead-letters out of it."""
    return _quorum_arguments() if queue_type == "quorum" else {"x-queue-type": "classic"}


def delay_level_arguments(names: Names, level: int, *, quorum: bool) -> dict[str, Any]:
    """Arguments of delay level queue ``level``: fixed TTL 2**level ms, dead-letter one level down.

    No dead-letter routing key is set, so the message keeps its binary routing key. With quorum
    work queues the levels are quorum queues with at-least-once dead-lettering (which needs
    ``x-overflow: reject-publish``), so a message cannot be lost between levels.
    """
    target = names.delay_level(level - 1) if level > 0 else names.delivery
    args: dict[str, Any] = {
        "x-message-ttl": 2**level,
        "x-dead-letter-exchange": target,
    }
    if quorum:
        args.update(_quorum_arguments())
        args.update(_QUORUM_DEAD_LETTERING)
    else:
        args["x-queue-type"] = "classic"
    return args


def _classic_or_quorum(quorum: bool) -> dict[str, Any]:
    return _quorum_arguments() if quorum else {"x-queue-type": "classic"}


def reply_queue_arguments(expires: float, quorum: bool = False) -> dict[str, Any]:
    """Arguments of a client's reply queue: removed by the broker once unused for
    ``expires`` seconds (durable, so that it outlives a reconnect of its client). Quorum when
    the App's work queues are: a classic queue is gone while its node is down, and with it
    the replies of every caller that was connected there."""
    return {**_classic_or_quorum(quorum), "x-expires": max(1, int(expires * 1000))}


def beat_lease_arguments(quorum: bool = False) -> dict[str, Any]:
    """Arguments of the schedulers' lease queue: RabbitMQ delivers to one consumer at a time
    and moves on to the next when that one's channel closes (3.8+, classic and quorum).
    Quorum when the App's work queues are, so that the lease outlives a node."""
    return {**_classic_or_quorum(quorum), "x-single-active-consumer": True}


def beat_status_arguments(quorum: bool = False) -> dict[str, Any]:
    """Arguments of the status mirror: only the latest record is kept (``x-max-length``
    counts ready messages: a copy someone is reading does not count)."""
    return {**_classic_or_quorum(quorum), "x-max-length": 1}


def _bit_pattern(level: int, bit: str) -> str:
    # The routing key lists bits from level DELAY_LEVELS-1 down to 0, then the queue name.
    return "*." * (DELAY_LEVELS - 1 - level) + bit + ".#"


def delay_level_bindings(names: Names, level: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """``(queue binding pattern, (next exchange, pattern))`` of delay exchange ``level``.

    A key with bit ``level`` set goes into the level's queue; with it clear, on to the next
    exchange down (``{p}.delivery`` below level 0).
    """
    below = names.delay_level(level - 1) if level > 0 else names.delivery
    return (names.delay_level(level), _bit_pattern(level, "1")), (below, _bit_pattern(level, "0"))


def delivery_binding(route: str) -> str:
    """The ``{p}.delivery`` binding pattern of a work queue (its route, see :func:`routes`):
    exactly DELAY_LEVELS bit words, then the route. Anchored on the bit count rather than
    ``#.{route}``, so that the key of ``orders.3`` cannot match the binding of a queue named
    ``3`` (topic ``*`` is exactly one word, ``#`` any number)."""
    return "*." * DELAY_LEVELS + route


def delay_routing_key(delay_ms: int, queue: str) -> str:
    """The routing key that carries ``delay_ms`` in binary, then the target route."""
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"delay must be between 0 and {MAX_DELAY_MS} ms, got {delay_ms}")
    bits = format(delay_ms, f"0{DELAY_LEVELS}b")
    return ".".join(bits) + "." + queue


def queue_from_delay_key(routing_key: str) -> str:
    """The target route (queue, or ``queue.i`` for a partition) written after the bit words
    of a delay routing key."""
    return routing_key.split(".", DELAY_LEVELS)[-1]


# -- partitions --------------------------------------------------------------------------------

MAX_PARTITIONS = 256


def routes(queue: str, partitions: int) -> list[str]:
    """The routes (routing keys, and work queue names after ``{p}.q.``) of ``queue``: itself
    when it has one partition, else ``queue.0`` ... ``queue.{k-1}``."""
    if partitions <= 1:
        return [queue]
    return [f"{queue}.{i}" for i in range(partitions)]


def route_of(queue: str, partition: int | None) -> str:
    """The route of one partition of ``queue`` (None: the queue is not partitioned)."""
    return queue if partition is None else f"{queue}.{partition}"


def split_route(route: str) -> tuple[str, int | None]:
    """``(queue, partition)`` of a route: ``("orders", 3)`` of ``orders.3``, ``(q, None)``
    of a plain queue name."""
    queue, dot, number = route.partition(".")
    if dot and number.isdigit():
        return queue, int(number)
    return route, None


def logical_queue(route: str) -> str:
    """The queue a route belongs to (``orders`` of ``orders.3``): what users see."""
    return split_route(route)[0]


def partition_of(key: str | bytes | int, partitions: int) -> int | None:
    """The partition of ``key`` among ``partitions`` (None when there is only one): CRC-32 of
    its bytes (text as UTF-8, an int as its decimal text), mod the count. The same in every
    process and Python version (unlike ``hash()``): one key always lands in one partition."""
    if partitions <= 1:
        return None
    if isinstance(key, int):
        key = str(key)
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) % partitions
