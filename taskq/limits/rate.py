"""Global rate limits: at most ``count`` starts of a task per ``per`` seconds, fleet-wide.

The broker keeps the count, no leader and no other server: each rate-limited task has a
*ticket queue*, ``{prefix}.rate.{task}.{count}-per-{ms}ms``, declared with

- ``x-message-ttl`` = the window: a ticket leaves the queue one window after it came
  (one TTL for the whole queue, so tickets expire in order, exactly, at the head);
- ``x-max-length`` = ``count`` with ``x-overflow: reject-publish``: while ``count`` tickets
  younger than the window are in the queue, the broker nacks the next one.

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
from typing import Any

from ..exceptions import ConfigurationError, PublishError
from ..message import OutgoingMessage
from ..topology import Names
from ..transport import Transport

_RATE = re.compile(r"\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}  # fmt: skip
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

    def queue(self, names: Names, task_name: str) -> str:
        """The ticket queue of ``task_name`` under this limit."""
        return f"{names.prefix}.rate.{task_name}.{self.count}-per-{int(self.per * 1000)}ms"

    def arguments(self) -> dict[str, Any]:
        """The ticket queue's arguments (see the module doc)."""
        return {
            "x-queue-type": "classic",
            "x-message-ttl": int(self.per * 1000),
            "x-max-length": self.count,
            "x-overflow": "reject-publish",
            "x-expires": int((IDLE_EXPIRY + self.per * 2) * 1000),
        }

    def deferral(self) -> float:
        """Seconds a deferred start waits: spread over the window, so that deferred tasks do
        not all come back at once."""
        return self.per / self.count + random.uniform(0.0, self.per)


class Limiter:
    """Takes tickets for one worker (declaring each ticket queue once)."""

    def __init__(self, transport: Transport, names: Names) -> None:
        self.transport = transport
        self.names = names
        self._declared: set[str] = set()
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
                return limit.deferral()
            return None
        raise PublishError(f"ticket queue {queue} vanished as soon as declared", unroutable=True)


_TICKET = OutgoingMessage(b"", persistent=False, content_type="application/octet-stream")
