"""Timestamps at the hops of a round trip, for ``benchmarks.roundtrip_trace``.

:func:`install` wraps a few methods of taskq's AMQP client (socket reads and writes, a
delivery handed to its consumer, a publish confirm) so that each call appends
``(monotonic ns, event, connection)`` to :data:`EVENTS`; :func:`dump` writes them as JSON.
With the Redis store: the store's script writes and reply reads, and an outcome published
to a waiter. ``time.monotonic_ns`` is CLOCK_MONOTONIC, comparable across the processes of
one machine.
Nothing here is imported by taskq itself: the worker runs under it through
``python -m benchmarks.bench_apps.traced_worker``.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from taskq.actions import Actions
from taskq.execution import Executor
from taskq.recorder import Recorder
from taskq.results import redis_wire
from taskq.results.amqp import AmqpResultStore
from taskq.results.listener import Listener
from taskq.sending import Sender
from taskq.transport import connection as amqp

EVENTS: list[tuple[int, str, str]] = []
_now = time.monotonic_ns


def mark(event: str, where: str = "") -> None:
    """Record ``event`` now."""
    EVENTS.append((_now(), event, where))


def _wrap(owner: type, name: str, event: str, where: Callable[[Any], str]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
        EVENTS.append((_now(), event, where(self)))
        return original(self, *args, **kwargs)

    setattr(owner, name, traced)


def install() -> None:
    """Trace socket reads/writes, deliveries, confirms and acks of this process."""
    _wrap(amqp.Connection, "data_received", "read", lambda c: c.name)
    _wrap(amqp.Connection, "_flush", "write", lambda c: c.name)
    _wrap(amqp.Channel, "_deliver", "deliver", lambda ch: ch.connection.name)
    _wrap(amqp.Channel, "_confirmed", "confirm", lambda ch: ch.connection.name)
    _wrap(amqp.Channel, "publish", "publish", lambda ch: ch.connection.name)
    _wrap(amqp.Channel, "write_acks", "ack", lambda ch: ch.connection.name)
    _wrap(AmqpResultStore, "_on_reply", "reply handled", lambda _: "")
    _wrap(AmqpResultStore, "wait", "result wait", lambda _: "")
    _wrap(Sender, "send", "send", lambda _: "")
    _wrap(Executor, "decide", "decide", lambda _: "")
    _wrap(Executor, "_run", "run", lambda _: "")
    _wrap(Actions, "act", "act", lambda _: "")
    _wrap(Recorder, "record", "record", lambda _: "")
    _wrap(redis_wire.RedisWire, "send", "redis write", lambda _: "")
    _wrap(redis_wire._Protocol, "data_received", "redis read", lambda _: "")
    _wrap(Listener, "published", "outcome published", lambda _: "")


def dump(path: str) -> None:
    """Write the events recorded so far to ``path`` (JSON)."""
    with open(path, "w") as out:
        json.dump(EVENTS, out)
