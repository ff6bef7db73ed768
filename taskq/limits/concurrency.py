"""Global concurrency limits: at most ``limit`` runs of a task at once per key, fleet-wide.

A *slot* is an exclusive queue, ``{prefix}.slot.{task}.{key}.{i}`` for ``i`` in
``0..limit-1``. Before a worker starts such a task it declares one of them exclusive
(:meth:`Transport.claim`): the broker lets one connection at a time own an exclusive queue
(any other gets 405 RESOURCE_LOCKED), atomically, cluster-wide, so the owners of a key's
slots are at most ``limit`` connections' runs. The run ends, the worker deletes the queue.

A worker that dies releases its slots by itself: an exclusive queue is deleted by the broker
when its connection closes. A killed process's socket is closed by the operating system, so
the broker frees its slots at once (milliseconds); a host that vanishes without closing its
sockets is noticed after the connection's heartbeat timeout (the ``heartbeat`` setting,
twice the interval at most). A connection that drops and comes back loses its slots the same
way while its runs go on: for that moment a key may run more than ``limit`` tasks.

Why not token messages held unacked: the broker counts only ready messages (``x-max-length``
ignores unacked ones), so nobody can tell a fresh key from one whose tokens are all taken,
and two workers filling a new key's token queue at once would make ``2 * limit`` tokens.
Exclusive queues need no filling and no counting: a key's slots exist only while held.

A task that finds no free slot is *deferred* like a rate-limited one (no attempt used, no
worker blocked): it comes back after a wait that doubles with each refusal of that key seen
by this worker (``DEFER_FIRST`` to ``DEFER_MAX``), with jitter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import random
import re
from collections.abc import Callable
from typing import Any

from ..exceptions import BrokerError, ConfigurationError, InvalidArguments
from ..topology import Names
from ..transport import Transport

log = logging.getLogger("taskq.limits")

TRIES = 5
"""Slots a worker tries per start before it defers the task (each refused try costs a
round trip and a channel: with a large limit that is nearly full, a start may be deferred
while a slot is free; the next try picks other slots)."""
DEFER_FIRST = 0.05
"""Seconds of the first deferral of a key (before jitter)."""
DEFER_MAX = 2.0
"""Seconds a deferral waits at most (before jitter)."""
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclasses.dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    """At most ``limit`` runs at once for each value of ``key`` (None: one key per task).

    ``key`` is called with the task's validated arguments that it names (see :meth:`of`).
    """

    limit: int
    key: Callable[..., Any] | None = None
    key_params: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, limit: int, key: Callable[..., Any] | None, task: Callable[..., Any]
    ) -> ConcurrencyLimit:
        """The limit of ``task``; ConfigurationError unless ``limit`` >= 1 and every
        parameter of ``key`` is a parameter of ``task`` (so ``lambda order: order.customer_id``
        gets the task's ``order`` argument, whatever else the task takes)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"concurrency_limit must be an int >= 1, not {limit!r}")
        if key is None:
            return cls(limit)
        if not callable(key):
            raise ConfigurationError(f"concurrency_key must be callable, not {key!r}")
        params = tuple(inspect.signature(key).parameters)
        known = inspect.signature(task).parameters
        unknown = [p for p in params if p not in known]
        if unknown:
            raise ConfigurationError(
                f"concurrency_key takes {unknown}, which {task.__qualname__}() does not: "
                f"name its parameters after the task's ({list(known)})"
            )
        return cls(limit, key, params)

    def key_of(
        self, signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str:
        """The key of one run of a task of ``signature`` called with ``args`` and
        ``kwargs``: ``key`` called with the arguments it names (left out: their defaults).
        InvalidArguments if ``key`` raises."""
        if self.key is None:
            return "all"
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        named = bound.arguments
        try:
            return str(self.key(**{p: named[p] for p in self.key_params}))
        except Exception as exc:  # the message cannot run: dead-lettered as invalid-args
            raise InvalidArguments(f"concurrency_key raised {exc!r}") from exc


def slot_queue(names: Names, task_name: str, key: str, index: int) -> str:
    """The exclusive queue of slot ``index`` of ``key`` (a key that is not a short plain word
    is hashed: any text may be a key, and a queue name is at most 255 bytes)."""
    if _PLAIN_KEY.fullmatch(key) is None:
        key = "h" + hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
    return f"{names.prefix}.slot.{task_name}.{key}.{index}"


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """A slot this worker holds for one run."""

    queue: str
    key: str


class Slots:
    """Claims and frees the slots of one worker (one connection)."""

    def __init__(self, transport: Transport, names: Names) -> None:
        self.transport = transport
        self.names = names
        self._held: set[str] = set()
        """Slots held (or being claimed) here: the connection that owns an exclusive queue
        may declare it again, so this worker must never claim one of its own twice."""
        self._refusals: dict[str, int] = {}
        self.deferred = 0
        """Starts deferred so far."""

    async def acquire(self, task_name: str, limit: int, key: str) -> Slot | float:
        """A slot of ``key`` (the run may start), or the seconds to defer the run by."""
        first = random.randrange(limit)
        tried = 0
        for step in range(limit):
            queue = slot_queue(self.names, task_name, key, (first + step) % limit)
            if queue in self._held:
                continue
            self._held.add(queue)  # before the await: a concurrent start here skips it
            try:
                claimed = await self.transport.claim(queue)
            except BaseException:
                self._held.discard(queue)
                raise
            if claimed:
                self._refusals.pop(key, None)
                return Slot(queue, key)
            self._held.discard(queue)
            tried += 1
            if tried >= TRIES:
                break
        return self._deferral(key)

    def _deferral(self, key: str) -> float:
        refusals = self._refusals[key] = self._refusals.get(key, 0) + 1
        if len(self._refusals) > 10_000:  # many keys over time: forget the oldest
            self._refusals.pop(next(iter(self._refusals)))
        self.deferred += 1
        wait: float = min(DEFER_MAX, DEFER_FIRST * 2.0 ** min(refusals - 1, 16))
        return wait * random.uniform(0.5, 1.5)

    async def release(self, slot: Slot) -> None:
        """Free ``slot`` (a lost connection freed it already: nothing to do then)."""
        try:
            await self.transport.delete_queue(slot.queue)
        except BrokerError as exc:  # the connection is gone, and the broker freed it with it
            log.warning("could not free concurrency slot %s: %s", slot.queue, exc)
        finally:
            self._held.discard(slot.queue)
