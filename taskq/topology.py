"""Names and arguments of every exchange and queue taskq declares. Pure: no I/O.

============================ ============== ================================================
name                          kind           purpose
============================ ============== ================================================
``{p}``                       direct         task routing; routing key = queue name
``{p}.q.{queue}``             queue          work queue (classic priority, or quorum)
``{p}.q.{queue}.{i}``         queue          partition i of a partitioned work queue
``{p}.dlx``                   direct         dead-letter exchange of every work queue
``{p}.q.{queue}.dead``        queue          what finally failed, reason in headers
``{p}.delay16.{P}``           topic          delay digit position P (0-8)
``{p}.delay16.{P}.{v}``       queue          TTL v * 16**P ms, dead-letters to position P-1
``{p}.delay.{L}``             topic + queue  binary delay level L of older versions (drained)
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

Delays are written in base 16 into the routing key: ``d8.d7. ... .d0.{route}`` (see
:class:`DelayScheme`). A message waits in queue ``(P, v)`` only if digit P is v != 0; each
queue has one fixed TTL, so RabbitMQ's head-first expiry is exact and a long delay never holds
back a short one. The unit is one millisecond and there are 9 digits: the longest delay is
16**9 - 1 = 2**36 - 1 ms (about 795 days), as with the 36 binary levels it replaces.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
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

    @property
    def revocation_readers(self) -> str:
        """The queue every worker reading the revocations holds a consumer on: its consumer
        count tells a cancel how many workers must acknowledge it (see taskq.cancel)."""
        return f"{self.prefix}.revocations.readers"

    @property
    def limit_changes(self) -> str:
        """The stream queue of limits changed at runtime (see taskq.limits.changes)."""
        return f"{self.prefix}.limits"

    def work_queue(self, queue: str) -> str:
        return f"{self.prefix}.q.{queue}"

    def dead_queue(self, queue: str) -> str:
        return f"{self.prefix}.q.{queue}.dead"

    def hold_queue(self, route: str) -> str:
        """The queue of a route's delayed messages that are due soon: workers hold them
        unacked until their due time (see taskq.delays)."""
        return f"{self.prefix}.hold.{route}"

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
        """Name of the exchange and of the queue of binary delay level ``level`` (the delay
        path of older versions, :data:`LEGACY_DELAY`)."""
        return f"{self.prefix}.delay.{level}"

    @property
    def delay_entry(self) -> str:
        """The top digit's exchange: any delay routing key may be published to it."""
        return DELAY.exchange(self, DELAY.digits - 1)

    def delay_exchange(self, delay_ms: int) -> str:
        """The exchange to publish a message delayed by ``delay_ms`` to: that of its highest
        non-zero digit. The ones above would only pass it down, and each exchange-to-exchange
        hop is routing work for the broker on every publish (entering at the top made delayed
        publishes 5-9x slower than direct ones)."""
        return DELAY.entry(self, delay_ms)


def every_name(names: Names, queues: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(queues, exchanges)``: every entity taskq may declare for ``queues`` under one prefix
    (what to delete to remove a prefix's topology). Name partitions by their routes
    (``orders.0``...): a route's work queue is ``{p}.q.{route}``."""
    queue_names = [
        n for q in queues for n in (names.work_queue(q), names.dead_queue(q), names.hold_queue(q))
    ]
    delay_queues = list(dict.fromkeys(delay_queue_names(names, legacy=True)))
    delay_exchanges = list(
        dict.fromkeys(DELAY.exchange_names(names) + LEGACY_DELAY.exchange_names(names))
    )
    fixed = [names.exchange, names.dlx, names.delivery, names.events, names.control]
    leases = [names.beat_lease, names.beat_status, names.revocations, names.revocation_readers,
              names.limit_changes]  # fmt: skip
    return queue_names + delay_queues + leases, delay_exchanges + fixed


def delay_queue_names(names: Names, *, legacy: bool = False) -> list[str]:
    """Every TTL queue of the delay scheme, and with ``legacy`` the binary levels too (where
    messages sent before an upgrade may wait)."""
    current = DELAY.queue_names(names)
    if not legacy or DELAY == LEGACY_DELAY:
        return current
    return current + LEGACY_DELAY.queue_names(names)


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


READERS_EXPIRY = 3600.0
"""Seconds the revocation readers' queue stays once no worker consumes it."""


def revocation_readers_arguments() -> dict[str, Any]:
    """Arguments of the revocation readers' queue: only its consumer count is used (nothing is
    ever published to it); a quorum queue, so that on a cluster it outlives any one node
    (workers and cancels need it); removed an hour after the last worker left."""
    return {"x-queue-type": "quorum", "x-expires": int(READERS_EXPIRY * 1000)}


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


def hold_queue_arguments(names: Names, queue: str, queue_type: QueueType) -> dict[str, Any]:
    """Arguments of a hold queue: those of its work queue without priorities (its messages are
    taken as they come and held in the worker until due)."""
    args = work_queue_arguments(names, queue, max_priority=0, queue_type=queue_type)
    args.pop("x-max-priority", None)
    args.setdefault("x-queue-type", "classic")
    return args


def dead_queue_arguments(queue_type: QueueType = "classic") -> dict[str, Any]:
    """Arguments of a ``.dead`` queue: durable, of the type of its work queue (a quorum work
    queue's failures survive the loss of a node too); nothing dead-letters out of it."""
    return _quorum_arguments() if queue_type == "quorum" else {"x-queue-type": "classic"}


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


@dataclasses.dataclass(frozen=True, slots=True)
class DelayPath:
    """Where one delayed message goes: the TTL queues it waits in, top first, and how many
    exchanges route it (the delivery exchange included)."""

    queues: list[str]
    exchanges: int


@dataclasses.dataclass(frozen=True, slots=True)
class DelayDeclarations:
    """Everything one delay scheme declares under a prefix, in declaration order."""

    exchanges: list[str]
    queues: list[tuple[str, dict[str, Any]]]
    queue_bindings: list[tuple[str, str, str]]
    """``(queue, exchange, pattern)``"""
    exchange_bindings: list[tuple[str, str, str]]
    """``(destination, source, pattern)``"""

    def without(self, declared: AbstractSet[str]) -> DelayDeclarations:
        """What is left to declare when the exchanges and queues whose :func:`declared_key`
        is in ``declared`` (with their bindings) already are."""
        return DelayDeclarations(
            [e for e in self.exchanges if declared_key("exchange", e) not in declared],
            [q for q in self.queues if declared_key("queue", q[0]) not in declared],
            [b for b in self.queue_bindings if declared_key("queue", b[0]) not in declared],
            [b for b in self.exchange_bindings if declared_key("exchange", b[1]) not in declared],
        )

    def keys(self) -> list[str]:
        """The :func:`declared_key` of each exchange and queue declared."""
        return [*(declared_key("exchange", name) for name in self.exchanges),
                *(declared_key("queue", name) for name, _ in self.queues)]  # fmt: skip


def declared_key(kind: Literal["exchange", "queue"], name: str) -> str:
    """How a transport remembers that it declared exchange or queue ``name``: by kind, since
    an exchange and a queue may share a name (the binary delay levels do)."""
    return f"{kind} {name}"


@dataclasses.dataclass(frozen=True, slots=True)
class DelayScheme:
    """Delays written in base ``2**digit_bits`` into the routing key, one word per digit,
    highest first, then the route: ``d8.d7. ... .d0.{route}`` (hexadecimal digits in base 16).

    Digit position P has a topic exchange and one queue per non-zero digit value v, with the
    fixed TTL v * radix**P ms, dead-lettering to the exchange of position P-1 (the delivery
    exchange below position 0). A message waits only in the queues of its non-zero digits.
    ``digit_bits=1`` is the binary levels ``{p}.delay.{L}`` (taskq 0.x): same names, keys.
    """

    digit_bits: int

    @property
    def radix(self) -> int:
        return int(2**self.digit_bits)

    @property
    def digits(self) -> int:
        return -(-DELAY_LEVELS // self.digit_bits)

    @property
    def max_ms(self) -> int:
        return int(self.radix**self.digits) - 1

    def describe(self) -> str:
        return f"base {self.radix}: {self.digits} digits, {self.digits * (self.radix - 1)} queues"

    def exchange(self, names: Names, position: int) -> str:
        """The exchange of digit ``position`` (the delivery exchange below 0)."""
        if position < 0:
            return names.delivery
        if self.digit_bits == 1:
            return names.delay_level(position)
        return f"{names.prefix}.delay{self.radix}.{position}"

    def queue(self, names: Names, position: int, value: int) -> str:
        """The TTL queue of digit ``value`` at ``position``."""
        if self.digit_bits == 1:
            return names.delay_level(position)
        return f"{self.exchange(names, position)}.{value}"

    def split(self, delay_ms: int) -> list[int]:
        """The digits of ``delay_ms``, lowest position first."""
        if not 0 <= delay_ms <= self.max_ms:
            raise ValueError(f"delay must be between 0 and {self.max_ms} ms, got {delay_ms}")
        return [(delay_ms >> (self.digit_bits * p)) % self.radix for p in range(self.digits)]

    def routing_key(self, delay_ms: int, route: str) -> str:
        """The routing key that carries ``delay_ms``, then the target route."""
        words = [format(d, "x") for d in reversed(self.split(delay_ms))]
        return ".".join([*words, route])

    def entry(self, names: Names, delay_ms: int) -> str:
        """The exchange to publish ``delay_ms`` to: that of its highest non-zero digit (the
        ones above would only pass it down, each a routing step on every publish)."""
        return self.exchange(names, max(0, (delay_ms.bit_length() - 1) // self.digit_bits))

    def path(self, names: Names, delay_ms: int) -> DelayPath:
        """The queues ``delay_ms`` waits in and the exchanges that route it."""
        digits = self.split(delay_ms)
        top = max(0, (delay_ms.bit_length() - 1) // self.digit_bits)
        waits = [self.queue(names, p, digits[p]) for p in range(top, -1, -1) if digits[p]]
        return DelayPath(waits, top + 2)

    def _pattern(self, position: int, word: str) -> str:
        return "*." * (self.digits - 1 - position) + word + ".#"

    def delivery_binding(self, route: str) -> str:
        """The delivery exchange's binding of a route: exactly ``digits`` words, then it."""
        return "*." * self.digits + route

    def route_of_key(self, routing_key: str) -> str:
        """The route written after the digit words of a delay routing key."""
        return routing_key.split(".", self.digits)[-1]

    def delay_of_key(self, routing_key: str) -> int:
        """The delay in ms written in a delay routing key's digit words."""
        words = routing_key.split(".", self.digits)[: self.digits]
        return int("".join(words), self.radix)

    def queue_arguments(
        self, names: Names, position: int, value: int, *, quorum: bool
    ) -> dict[str, Any]:
        """Fixed TTL ``value * radix**position`` ms, dead-letter to the exchange one position
        down with the routing key unchanged. Quorum: at-least-once dead-lettering (which
        needs ``x-overflow: reject-publish``), so a message cannot be lost between queues."""
        args: dict[str, Any] = {
            "x-message-ttl": value * self.radix**position,
            "x-dead-letter-exchange": self.exchange(names, position - 1),
        }
        if quorum:
            args.update(_quorum_arguments())
            args.update(_QUORUM_DEAD_LETTERING)
        else:
            args["x-queue-type"] = "classic"
        return args

    def declarations(
        self, names: Names, *, quorum: bool, delay_ms: int | None = None
    ) -> DelayDeclarations:
        """Every exchange, queue and binding of the scheme under ``names``; with ``delay_ms``,
        the queues (and their bindings) of that delay's path only. The exchanges and their
        pass-down bindings are always all there: they hold no messages and cost the broker
        little, while each TTL queue is a process of its own."""
        digits = None if delay_ms is None else self.split(delay_ms)
        out = DelayDeclarations([], [], [], [])
        for p in range(self.digits):
            exchange = self.exchange(names, p)
            out.exchanges.append(exchange)
            for v in range(1, self.radix):
                if digits is not None and digits[p] != v:
                    continue
                queue = self.queue(names, p, v)
                out.queues.append((queue, self.queue_arguments(names, p, v, quorum=quorum)))
                out.queue_bindings.append((queue, exchange, self._pattern(p, format(v, "x"))))
            below = self.exchange(names, p - 1)
            out.exchange_bindings.append((below, exchange, self._pattern(p, "0")))
        return out

    def queue_names(self, names: Names) -> list[str]:
        """Every TTL queue of the scheme, highest position last."""
        return [self.queue(names, p, v) for p in range(self.digits) for v in range(1, self.radix)]

    def exchange_names(self, names: Names) -> list[str]:
        return [self.exchange(names, p) for p in range(self.digits)]


LEGACY_DELAY = DelayScheme(digit_bits=1)
"""The binary levels of taskq before issue 25: what an older producer may still publish to,
and where messages sent before an upgrade may still wait."""

DELAY = DelayScheme(digit_bits=4)
"""The delay scheme taskq publishes with: base 16, 9 digits, 135 queues. Measured against
base 2, 4 and 8 in docs/internals/topology.md: the broker's cost of a delayed message is
mostly topic routing, which grows with the words of the key times the exchanges passed."""


def delay_path(delay_ms: int, names: Names | None = None) -> DelayPath:
    """The path of ``delay_ms`` through :data:`DELAY` (queue names under ``names``)."""
    return DELAY.path(names or Names("taskq"), delay_ms)


def delay_declarations(names: Names, delay_ms: int, quorum: bool) -> DelayDeclarations:
    """What a message delayed ``delay_ms`` through :data:`DELAY` needs declared: the delivery
    exchange first, every delay exchange, and the TTL queues of its path. Declared on first
    use, so that an App that never delays declares none of the 135 queues."""
    plan = DELAY.declarations(names, quorum=quorum, delay_ms=delay_ms)
    plan.exchanges.insert(0, names.delivery)
    return plan


def delay_queue_ttls(names: Names) -> list[tuple[str, int]]:
    """``(queue, TTL in ms)`` of every delay queue, the binary levels of older versions last
    (messages sent before an upgrade may wait there)."""
    schemes = [DELAY] if DELAY == LEGACY_DELAY else [DELAY, LEGACY_DELAY]
    return [
        (scheme.queue(names, p, v), v * scheme.radix**p)
        for scheme in schemes
        for p in range(scheme.digits)
        for v in range(1, scheme.radix)
    ]


def delivery_binding(route: str) -> str:
    """The ``{p}.delivery`` binding pattern of a work queue (its route, see :func:`routes`):
    exactly as many digit words as the scheme has, then the route. Anchored on the word count
    rather than ``#.{route}``, so that the key of ``orders.3`` cannot match the binding of a
    queue named ``3`` (topic ``*`` is exactly one word, ``#`` any number)."""
    return DELAY.delivery_binding(route)


HOLD_MARK = "~hold"
"""The routing-key word, after the delay digits, of a message bound for a route's hold queue
rather than its work queue (``d8. ... .d0.~hold.{route}``)."""


def hold_binding(route: str) -> str:
    """The delivery exchange's binding of a route's hold queue."""
    return DELAY.delivery_binding(f"{HOLD_MARK}.{route}")


def delivery_bindings(route: str) -> list[str]:
    """Every delivery binding of a route: the current scheme's and, while messages sent
    before an upgrade may still wait in the binary levels, theirs."""
    keys = [DELAY.delivery_binding(route), LEGACY_DELAY.delivery_binding(route)]
    return list(dict.fromkeys(keys))


def delay_routing_key(delay_ms: int, queue: str) -> str:
    """The routing key that carries ``delay_ms``, then the target route."""
    return DELAY.routing_key(delay_ms, queue)


def queue_from_delay_key(routing_key: str) -> str:
    """The target route (queue, or ``queue.i`` for a partition) written after the digit words
    of a delay routing key (of the current scheme, or of the binary levels)."""
    words = routing_key.count(".") + 1
    scheme = LEGACY_DELAY if words > LEGACY_DELAY.digits else DELAY
    route = scheme.route_of_key(routing_key)
    return route.removeprefix(f"{HOLD_MARK}.")


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
