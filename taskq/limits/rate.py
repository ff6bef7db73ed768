"""Global rate limits: at most ``count`` starts of a task per ``per`` seconds, fleet-wide.

The broker keeps the count, no leader and no other server: each rate-limited task has a
*ticket queue*, ``{prefix}.rate.{task}.{tickets}-per-{ms}ms``, declared with

- ``x-message-ttl`` = a slice of the window: a ticket leaves the queue one slice after it
  came (one TTL for the whole queue, so tickets expire in order, exactly, at the head);
- ``x-max-length`` = ``tickets`` with ``x-overflow: reject-publish``: while ``tickets``
  tickets younger than the slice are in the queue, the broker nacks the next one.

The slice is the window cut in ``d`` (:meth:`RateLimit.slices`: at most 10, each of at least
250 ms and 5 tickets): ``50/s`` is kept as 25 per 500 ms. Any window of the limit's length is
covered by ``d`` slices, so it still holds at most ``count`` starts; but the starts spread over
the window instead of coming in bursts of ``count`` at its start, every window (the tickets of
one burst all expire together, and let the next burst in), where a start that lags its ticket
a little, on a busy worker, would put more than ``count`` starts in a window.

Before a worker starts such a task it publishes a ticket (confirmed): acked, the task starts;
nacked, the window is full, and the task is *deferred*: its message goes back through the
delay levels unchanged (same attempt, so a deferral uses no attempt and never fails it), and
the worker takes its next delivery at once (a deferral never blocks other tasks). The limit
is in the queue's name, so a task whose limit changes gets a new queue (the old one empties
within a window and is removed by ``x-expires``). The memory transport enforces no limit.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from typing import Any

from ..exceptions import ConfigurationError, PublishError
from ..message import OutgoingMessage
from ..topology import Names
from ..transport import Transport

_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}  # fmt: skip
MAX_SLICES = 10
MIN_SLICE = 0.25
"""Seconds a slice of the window lasts at least. A ticket frees its place at the end of its
slice, and the place stays empty until the next try comes: the shorter the slice, the more
of the limit is lost that way (measured at 50/s, 4 workers: 100 ms slices started 5-7 % too
few, 500 ms slices 1-2 %)."""
MIN_SLICE_TICKETS = 5
"""Tickets a slice holds at least: a small limit keeps its bursts (``3/m``: three at once)."""
MAX_SPREAD = 10.0
"""Windows a deferral is spread over at most, however deep the backlog."""
IDLE_EXPIRY = 60.0
"""Seconds a ticket queue nobody uses lives on past two windows (``x-expires``): by then it
holds no ticket, so nothing is lost when the broker removes it."""


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts per ``per`` seconds."""

    count: int
    per: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/s"``, ``"20/m"``, ``"500/h"``; ConfigurationError otherwise."""
        found = _RATE.fullmatch(text) if isinstance(text, str) else None
        if found is None or int(found[1]) < 1:
            raise ConfigurationError(
                f"invalid rate limit {text!r}: use COUNT/s, COUNT/m or COUNT/h with COUNT >= 1"
            )
        return cls(int(found[1]), _UNITS[found[2]])

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per, f"{self.per:g}s")
        return f"{self.count}/{unit}"

    def slices(self) -> int:
        """In how many slices the window is kept (see the module doc): the most, up to
        ``MAX_SLICES``, that divides ``count`` and leaves ``MIN_SLICE_TICKETS`` tickets and
        ``MIN_SLICE`` seconds to a slice."""
        fits = (
            d
            for d in range(MAX_SLICES, 1, -1)
            if self.count % d == 0 and self.count // d >= MIN_SLICE_TICKETS
        )
        return next((d for d in fits if self.per / d >= MIN_SLICE), 1)

    def queue(self, names: Names, task_name: str) -> str:
        """The ticket queue of ``task_name`` under this limit."""
        d = self.slices()
        ms = int(self.per * 1000 / d)
        return f"{names.prefix}.rate.{task_name}.{self.count // d}-per-{ms}ms"

    def arguments(self) -> dict[str, Any]:
        """The ticket queue's arguments (see the module doc)."""
        d = self.slices()
        return {
            "x-queue-type": "classic",
            "x-message-ttl": int(self.per * 1000 / d),
            "x-max-length": self.count // d,
            "x-overflow": "reject-publish",
            "x-expires": int((IDLE_EXPIRY + self.per * 2) * 1000),
        }

    def deferral(self, demand: float = 1.0) -> float:
        """Seconds a deferred start waits: spread over the window, so that deferred tasks do
        not all come back at once, and over more windows when ``demand`` (tries per start
        allowed, see :class:`Demand`) is high."""
        spread = min(MAX_SPREAD, max(1.0, demand / 2))
        return self.per / self.count + random.uniform(0.0, self.per * spread)


class Demand:
    """How many starts of one task this worker tried per start the limit allowed, over its
    last full window: a deep backlog retries each task less often.

    Each deferred task comes back once per ``spread`` windows on average, so a backlog of B
    tasks makes about ``2B / spread`` tries a window for ``count`` starts. With ``spread`` =
    half the tries per start it settles at ``sqrt(B / count)`` windows: for 3,000 tasks at
    50/s, 16 tries a second per start allowed instead of 120 (each try is a ticket publish, a
    republish through the delay levels and an ack: that churn starved the workers' event
    loops, and their starts lagged their tickets unevenly). A few tasks left: one window.
    Every worker sees about the same ratio, so it needs no coordination.
    """

    __slots__ = ("_admitted", "_began", "_tries", "ratio")

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._tries = 0
        self._admitted = 0
        self.ratio = 1.0

    def count(self, admitted: bool, window: float) -> float:
        """Count one try; the ratio of the last full window."""
        now = time.monotonic()
        if now - self._began >= window:
            self.ratio = self._tries / max(1, self._admitted) if self._tries else 1.0
            self._began, self._tries, self._admitted = now, 0, 0
        self._tries += 1
        self._admitted += admitted
        return self.ratio


class Limiter:
    """Takes tickets for one worker (declaring each ticket queue once)."""

    def __init__(self, transport: Transport, names: Names) -> None:
        self.transport = transport
        self.names = names
        self._declared: set[str] = set()
        self._demand: dict[str, Demand] = {}
        self.deferred = 0
        """Starts deferred so far."""

    async def admit(self, task_name: str, limit: RateLimit) -> float | None:
        """None if ``task_name`` may start now (a ticket was taken), else the seconds to
        defer it by. BrokerError if the broker cannot be asked."""
        queue = limit.queue(self.names, task_name)
        for _ in range(2):
            if queue not in self._declared:
                await self.transport.declare_queue(queue, limit.arguments())
                self._declared.add(queue)
            try:
                await self.transport.publish("", queue, _TICKET)
            except PublishError as exc:
                if exc.unroutable:  # idle past x-expires, so gone: declare it again
                    self._declared.discard(queue)
                    continue
                self.deferred += 1
                return limit.deferral(self._demand_of(queue).count(False, limit.per))
            self._demand_of(queue).count(True, limit.per)
            return None
        raise PublishError(f"ticket queue {queue} vanished as soon as declared", unroutable=True)

    def _demand_of(self, queue: str) -> Demand:
        demand = self._demand.get(queue)
        if demand is None:
            demand = self._demand[queue] = Demand()
        return demand


_TICKET = OutgoingMessage(b"", persistent=False, content_type="application/octet-stream")
