"""Where a delayed message goes: the delay levels for the far part of its delay, then a hold
queue from which a worker takes it early and holds it until its due time.

The broker's cost of a delayed message is per hop (each TTL queue waited in is a persistent
dead-letter republish, each exchange passed a topic match), and at due time it is paid by
every message due at once: 20,000 tasks due together took 16 s to come out of the levels on
this project's test machine. So the levels do only the coarse part of a delay, ahead of time:

- a delay of up to :data:`HOLD_WINDOW_MS` skips the levels: it is published straight to the
  hold queue of its route;
- a longer one waits in the levels for its delay less :data:`HOLD_LEAD_MS`, rounded down to
  a multiple of :data:`HOLD_WINDOW_MS` (only the digits above the window: at most 5 waits),
  and comes out into the hold queue between :data:`HOLD_LEAD_MS` and the window ahead of
  its due time.

A worker consumes its routes' hold queues without a prefetch limit, holds each message
unacked, and runs it at the due time carried in the :data:`H_DUE` header (the sender's wall
clock, as an ``eta`` is). Held messages are the broker's until acked: a worker that dies or
stops gives them back, and the next worker holds them again. At due time the broker does
nothing at all: the message is already in the worker's memory.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

from . import topology
from .topology import Names

HOLD_WINDOW_MS = 16**4
"""Delays up to this (65.5 s) go straight to a hold queue; longer ones come out of the levels
this much ahead of their due time at most (plus :data:`HOLD_LEAD_MS`)."""

HOLD_LEAD_MS = 2_000
"""The least a message leaves the levels ahead of its due time: room for a busy broker's
backlog of dead-letter republishes, which is paid before the due time instead of after."""

H_DUE = "x-taskq-due"
"""Header of a delayed message: its due time, milliseconds since the epoch (sender's clock)."""


def levels_delay(delay_ms: int) -> int:
    """The part of ``delay_ms`` spent in the delay levels (0: straight to the hold queue)."""
    if delay_ms <= HOLD_WINDOW_MS:
        return 0
    return (delay_ms - HOLD_LEAD_MS) // HOLD_WINDOW_MS * HOLD_WINDOW_MS


def target(names: Names, delay_ms: int, route: str) -> tuple[str, str, int]:
    """``(exchange, routing key, levels delay)`` of a message of ``route`` delayed
    ``delay_ms``: the default exchange to its hold queue, or the levels with the hold mark."""
    return _target(names, levels_delay(delay_ms), route, topology.DELAY)


@functools.lru_cache(maxsize=4096)
def _target(
    names: Names, through_levels: int, route: str, scheme: topology.DelayScheme
) -> tuple[str, str, int]:
    # Cached: the levels delay is a multiple of the hold window, so a burst of delayed sends
    # (and their routes asked again when written) has a few distinct ones.
    if not through_levels:
        return "", names.hold_queue(route), 0
    key = scheme.routing_key(through_levels, f"{topology.HOLD_MARK}.{route}")
    return scheme.entry(names, through_levels), key, through_levels


def due_header(delay_ms: int, now: float | None = None) -> dict[str, Any]:
    """The header that carries a message's due time, ``delay_ms`` from ``now`` (rounded up
    to the next millisecond: never early)."""
    return {H_DUE: math.ceil((time.time() if now is None else now) * 1000) + delay_ms}


def time_left_ms(due: dict[str, Any], now: float | None = None) -> int:
    """Milliseconds from ``now`` to the due time of a :func:`due_header` (0 if past)."""
    due_ms: int = due[H_DUE]
    return max(0, due_ms - math.ceil((time.time() if now is None else now) * 1000))


def due_of(headers: Any) -> float | None:
    """The due time (epoch seconds) a delivery's headers carry, or None if they carry none
    that can be read (a message from the levels of an older taskq, or a foreign producer's:
    it is due at once). Milliseconds, an integer or a double: another client may write a
    double where taskq writes an integer, and must not have its message run early."""
    value = headers.get(H_DUE) if isinstance(headers, dict) else None
    # Not a bool (a flag is no time), nor a decimal (an AMQP decimal cannot hold epoch ms).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    due = value / 1000
    return due if math.isfinite(due) else None
