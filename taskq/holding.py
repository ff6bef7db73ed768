"""The worker's side of delays (see :mod:`taskq.delays`): what it holds, and what it runs next.

A :class:`Holder` keeps the deliveries of the hold queues, unacked, until their due time, then
hands each to the runners' :class:`Inbox` behind the deliveries of the work queues: a burst of
retries coming due at once must not make fresh tasks wait behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .delays import due_of
from .exceptions import DecodeError
from .message import envelope_of
from .transport import Delivery

T = TypeVar("T")


class Inbox(Generic[T]):
    """A queue of two lanes: :meth:`put_nowait` (fresh deliveries, and the runners' stop
    sentinels) is taken before :meth:`put_due` (held deliveries that came due), and at most
    ``due_limit`` items of the due lane are out (taken, not yet :meth:`finished`) at a time:
    thousands of retries coming due together leave runners, and turns of the event loop, to
    the fresh deliveries that arrive meanwhile."""

    __slots__ = ("_due", "_due_limit", "_due_out", "_fresh", "_waiters")

    def __init__(self, due_limit: int) -> None:
        self._fresh: deque[T] = deque()
        self._due: deque[T] = deque()
        self._due_limit = due_limit
        self._due_out: set[int] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def put_nowait(self, item: T) -> None:
        self._fresh.append(item)
        self._wake()

    def put_due(self, item: T) -> None:
        self._due.append(item)
        self._wake()

    def empty(self) -> bool:
        return not (self._fresh or self._due)

    def qsize(self) -> int:
        return len(self._fresh) + len(self._due)

    def get_nowait(self) -> T:
        """The next item, due limit or not (for a worker's last look at what was left)."""
        if self._fresh:
            return self._fresh.popleft()
        if self._due:
            return self._due.popleft()
        raise asyncio.QueueEmpty

    def finished(self, item: T) -> None:
        """``item`` (taken with :meth:`get`) is done with."""
        if self._due_out:
            self._due_out.discard(id(item))
            if self._due and len(self._due_out) < self._due_limit:
                self._wake()

    def _ready(self) -> bool:
        return bool(self._fresh) or (bool(self._due) and len(self._due_out) < self._due_limit)

    async def get(self) -> T:
        while not self._ready():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was woken for an item it will not take: pass it on
                raise
        if self._fresh:
            return self._fresh.popleft()
        item = self._due.popleft()
        if item is not None:  # a runner's stop sentinel is never finished
            self._due_out.add(id(item))
        return item

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def decode_ahead(delivery: Delivery) -> None:
    """Decode a held delivery while it waits (``Delivery.decoded``): 20,000 due at once
    start without 20,000 decodes then. One that cannot be decoded is left for the runner
    to dead-letter when it comes due."""
    with contextlib.suppress(DecodeError):
        delivery.decoded = envelope_of(delivery)


class Holder:
    """Holds deliveries until the due time in their headers, then calls ``on_due`` with each
    (in due order; at once for one that is due already or carries no due time).

    A delivery that comes back (redelivered) before its due time cannot have started: its
    holder died or stopped while holding it. It is not counted as a redelivery, or every
    worker restart would count one crash against every message it held. One whose channel
    closed while it was held (a lost connection) is dropped when due: the broker took it
    back, and delivers it again to a channel of the reconnected worker.
    """

    def __init__(
        self,
        on_due: Callable[[Delivery], None],
        prepare: Callable[[Delivery], None] | None = None,
    ) -> None:
        self._on_due = on_due
        self._prepare = prepare
        """Called with each delivery it starts to hold: what can be done for it ahead of its
        due time (the worker decodes it), rather than for thousands due at once."""
        self._heap: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def __len__(self) -> int:
        return len(self._heap)

    def held(self) -> list[tuple[float, Delivery]]:
        """``(due time, delivery)`` of what is held, soonest first."""
        return [(due, delivery) for due, _, delivery in sorted(self._heap)]

    def on_delivery(self, delivery: Delivery) -> None:
        """A consumer callback for the hold queues (does not block)."""
        due = due_of(delivery.headers)
        if due is None or due <= time.time():
            self._on_due(delivery)
            return
        delivery.redelivered = False
        heapq.heappush(self._heap, (due, next(self._order), delivery))
        if due < self._timer_at:
            self._schedule(due)
        if self._prepare is not None:
            self._prepare(delivery)

    def release_all(self) -> list[Delivery]:
        """Stop holding: return everything held (to be given back), soonest first."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
        held = [delivery for _, delivery in self.held() if not delivery.stale]
        self._heap.clear()
        return held

    def _schedule(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, due - time.time()), self._release_due
        )

    def _release_due(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        heap, now = self._heap, time.time()
        while heap and heap[0][0] <= now:
            delivery = heapq.heappop(heap)[2]
            if not delivery.stale:  # else the broker took it back when its channel closed
                self._on_due(delivery)
        if heap:  # the loop's clock may wake a little before the wall clock says it is due
            self._schedule(heap[0][0])
