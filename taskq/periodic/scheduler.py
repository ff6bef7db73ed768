"""The Scheduler ("beat"): any number may run for one App, and exactly one is active.

Each scheduler bids for the App's lease (:mod:`taskq.transport.lease`). The holder settles
the entries (:mod:`taskq.periodic.plan`) whenever a tick comes due, and sends the firings
together with the new state record in one transaction: a tick is counted as fired exactly
when its task was sent. The other schedulers stand by; when the holder's connection closes
(it stopped, crashed or was SIGKILLed) the broker hands the record to the next one, which
catches up on what came due meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import logging
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..exceptions import BrokerUnavailable, ConfigurationError, LifecycleError
from ..topology import Names
from ..transport import Lease, Tenure
from .entry import PeriodicEntry
from .plan import Firing, next_tick, settle
from .schedule import iso
from .state import BeatState, EntryState, merged

if TYPE_CHECKING:
    from ..sending import Sender

log = logging.getLogger("taskq.beat")

BATCH = 100
"""Firings sent per transaction at most (a long catch-up goes out in several)."""
RENEW_AFTER = 60.0
"""Seconds without a commit after which the holder commits its unchanged state: a record
held unacked past RabbitMQ's consumer_timeout (30 min by default) would cost the lease, and
``taskq beat list`` shows how recently the holder wrote."""
MAX_SLEEP = 5.0  # wall-clock ticks, monotonic sleeps: look at the clock again at least this often
RETRY_AFTER = 1.0


class SchedulerState(enum.StrEnum):
    """NEW -> STANDBY <-> ACTIVE -> STOPPED."""

    NEW = "new"
    STANDBY = "standby"
    ACTIVE = "active"
    STOPPED = "stopped"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(slots=True)
class _Term:
    """What the holder knows during one tenure."""

    tenure: Tenure
    since: dt.datetime
    state: BeatState
    last_commit: dt.datetime | None = None

    def renewal_due(self, now: dt.datetime) -> bool:
        return self.last_commit is None or (now - self.last_commit).total_seconds() >= RENEW_AFTER


class Scheduler:
    """Bids for an App's lease and, while it holds it, sends its periodic entries' firings.

    ``run(sender)`` may be called once (the sender's transport holds the lease, and the
    sender builds the firings' messages); ``stop()`` ends it (the lease is released at
    once, so a standby scheduler takes over without waiting). ``clock`` gives the current
    time as an aware datetime (tests pass their own).
    """

    def __init__(
        self,
        entries: Mapping[str, PeriodicEntry],
        names: Names,
        *,
        name: str,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        if not entries:
            raise ConfigurationError("the App has no periodic entries (@app.periodic)")
        self.entries = list(entries.values())
        self.names = names
        self.name = name
        self.clock = clock
        self.host = socket.gethostname()
        """The machine this scheduler runs on (in its state records, for ``beat list``)."""
        self.fired = 0
        """Firings sent by this scheduler."""
        self._state = SchedulerState.NEW
        self._since: dt.datetime | None = None
        self._stop = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Scheduler {self.name} {self._state.value} entries={len(self.entries)}>"

    @property
    def state(self) -> SchedulerState:
        """Where the scheduler is in its life."""
        return self._state

    @property
    def active_since(self) -> dt.datetime | None:
        """When this scheduler became the active one (None while it is not)."""
        return self._since

    def stats(self) -> dict[str, Any]:
        """Who the scheduler is and what it has done."""
        return {
            "scheduler": self.name,
            "state": self._state.value,
            "active_since": iso(self._since) if self._since else None,
            "entries": len(self.entries),
            "fired": self.fired,
        }

    def stop(self) -> None:
        """Stop bidding, and give up the lease if held (idempotent)."""
        self._stop.set()

    async def run(self, sender: Sender) -> None:
        """Bid for the lease and serve while holding it, until ``stop()``. A lost lease or
        broker is bid for again every second. LifecycleError on a second call."""
        if self._state is not SchedulerState.NEW:
            raise LifecycleError(f"scheduler {self.name} already ran: a Scheduler runs once")
        lease = sender.transport.beat_lease(self.name)
        self._state = SchedulerState.STANDBY
        log.info("beat %s bidding for %s (%d entries)", self.name, self.names.beat_lease,
                 len(self.entries))  # fmt: skip
        try:
            while not self._stop.is_set():
                await self._term(lease, sender)
        finally:
            await lease.release()
            self._state = SchedulerState.STOPPED
            log.info("beat %s stopped", self.name)

    async def _term(self, lease: Lease, sender: Sender) -> None:
        """One bid, and the tenure that follows if it wins."""
        try:
            tenure = await lease.acquire(BeatState().encode(), self._stop)
            if tenure is not None:
                await self._hold(tenure, sender)
        except BrokerUnavailable as exc:
            if self._stop.is_set():
                return
            log.warning("beat %s lost the lease or the broker (%s); bidding again",
                        self.name, exc)  # fmt: skip
            with_stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({with_stop}, timeout=RETRY_AFTER)
            with_stop.cancel()
        finally:
            if self._state is SchedulerState.ACTIVE:
                self._state = SchedulerState.STANDBY
            self._since = None
            await lease.release()

    async def _hold(self, tenure: Tenure, sender: Sender) -> None:
        """Serve as the active scheduler until the lease is lost or the scheduler stopped."""
        term = _Term(tenure, self.clock(), merged(tenure.records))
        self._since, self._state = term.since, SchedulerState.ACTIVE
        log.info("beat %s is active since %s (state last written by %s)", self.name,
                 iso(term.since), term.state.holder or "nobody")  # fmt: skip
        for queue in sorted({entry.task.config.queue for entry in self.entries}):
            await sender.transport.declare_work_queue(queue)
        while not self._stop.is_set() and not tenure.lost:
            # A record that arrives after activation (a second initial record, see
            # taskq.transport.lease) may know more: merging never loses what a record says.
            term.state = term.state.merge(merged(tenure.records))
            now = self.clock()
            firings, states = settle(self.entries, term.state.entries, now=now,
                                     since=term.since, limit=BATCH)  # fmt: skip
            if firings or states != term.state.entries or term.renewal_due(now):
                await self._commit(sender, term, firings, states, now)
                if len(firings) == BATCH:
                    continue  # more is due
            await tenure.wait(self._sleep(term), self._stop)

    def _sleep(self, term: _Term) -> float:
        """Seconds until the next tick or renewal (at most MAX_SLEEP)."""
        now = self.clock()
        seconds = MAX_SLEEP
        if term.last_commit is not None:
            seconds = min(seconds, RENEW_AFTER - (now - term.last_commit).total_seconds())
        upcoming = next_tick(self.entries, term.state.entries)
        if upcoming is not None:
            # A millisecond past the tick: the loop's clock and the wall clock differ a little.
            seconds = min(seconds, (upcoming - now).total_seconds() + 0.001)
        return max(0.0, seconds)

    async def _commit(
        self,
        sender: Sender,
        term: _Term,
        firings: list[Firing],
        states: dict[str, EntryState],
        now: dt.datetime,
    ) -> None:
        """Send ``firings`` with the state that counts them as sent (see the module doc)."""
        state = BeatState(states, self.name, term.since, now, self.host)
        by_name = {entry.name: entry for entry in self.entries}
        fired = [(by_name[firing.entry], firing.tick) for firing in firings]
        messages, sendings = await sender.firings(fired, sent_at=now.timestamp())
        returned = await term.tenure.commit(messages, state.encode())
        await sender.after_send(sendings)
        term.state, term.last_commit = state, now
        self.fired += len(firings)
        for firing in firings:
            log.info("beat %s fired %s for %s%s", self.name, firing.entry, iso(firing.tick),
                     " (caught up)" if firing.late else "")  # fmt: skip
        for task_id, code in returned.items():
            # The state already counts it as sent: say so loudly (its work queue was deleted
            # while the scheduler ran; the next start of a scheduler or worker declares it).
            log.error("beat %s: firing %s was returned by the broker (%d, no queue bound): "
                      "it is lost", self.name, task_id, code)  # fmt: skip
