"""Which ticks fire now: the decision of an active scheduler. Pure: the clock is an argument.

A scheduler that became active at ``since`` settles each entry up to ``now``:

- an entry with no state yet, or whose schedule changed in code (another fingerprint), starts
  at ``since``: nothing before it is owed;
- ticks in ``(cursor, since]`` came due while no scheduler was active: the entry's catch-up
  policy says which of them fire (``all``, the latest ``one``, or none with ``skip``);
- ticks in ``(since, now]`` came due while this scheduler was active: they all fire, even
  if the scheduler is late to them.

The cursor then moves past what was settled, so a tick at or before a cursor never fires
again, whatever clock the next scheduler has.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from .schedule import Schedule
from .state import EntryState


class Plannable(Protocol):
    """What planning needs of an entry (PeriodicEntry has it)."""

    @property
    def name(self) -> str: ...
    @property
    def schedule(self) -> Schedule: ...
    @property
    def catch_up(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Firing:
    """One tick of one entry to fire now; ``late`` when it came due while no scheduler was
    active (caught up)."""

    entry: str
    tick: dt.datetime
    late: bool = False


def settle(
    entries: Sequence[Plannable],
    states: Mapping[str, EntryState],
    *,
    now: dt.datetime,
    since: dt.datetime,
    limit: int,
) -> tuple[list[Firing], dict[str, EntryState]]:
    """The firings due at ``now`` (at most ``limit``, the earliest first per entry) and every
    entry's state once they are sent. States of names not in ``entries`` are kept as they are
    (a replica running other code may know them). Call again while it returns ``limit``
    firings: the rest is still due."""
    firings: list[Firing] = []
    after = dict(states)
    for entry in entries:
        fired, after[entry.name] = _settle_entry(
            entry, states.get(entry.name), now, since, limit - len(firings)
        )
        firings.extend(fired)
    return firings, after


def _settle_entry(
    entry: Plannable, state: EntryState | None, now: dt.datetime, since: dt.datetime, room: int
) -> tuple[list[Firing], EntryState]:
    schedule = entry.schedule
    fingerprint = schedule.fingerprint
    if state is None or state.fingerprint != fingerprint:
        start = since if state is None else max(state.cursor, since)
        state = EntryState(start, state.last_fired if state else None, fingerprint)
    cursor, fired = state.cursor, list[Firing]()
    if room <= 0:
        return fired, state
    if cursor < since:
        missed = _missed(entry, cursor, since, room)
        fired = [Firing(entry.name, tick, late=True) for tick in missed]
        cut_short = entry.catch_up == "all" and len(missed) == room
        cursor = missed[-1] if cut_short else since
    if cursor >= since and len(fired) < room:
        on_time = schedule.between(cursor, now, room - len(fired))
        fired += [Firing(entry.name, tick) for tick in on_time]
        cursor = on_time[-1] if on_time else cursor
    last = fired[-1].tick if fired else state.last_fired
    return fired, EntryState(cursor, last, fingerprint)


def _missed(
    entry: Plannable, cursor: dt.datetime, since: dt.datetime, room: int
) -> list[dt.datetime]:
    """The ticks in ``(cursor, since]`` that fire under the entry's catch-up policy."""
    if entry.catch_up == "skip":
        return []
    if entry.catch_up == "all":
        return entry.schedule.between(cursor, since, room)
    latest = entry.schedule.latest(cursor, since)
    return [] if latest is None else [latest]


def next_tick(entries: Iterable[Plannable], states: Mapping[str, EntryState]) -> dt.datetime | None:
    """The earliest tick after the entries' cursors (None with no entries, or none to come).
    An entry without state is left out: the next settle gives it one."""
    upcoming = [
        tick
        for entry in entries
        if (state := states.get(entry.name)) is not None
        and (tick := entry.schedule.after(state.cursor)) is not None
    ]
    return min(upcoming, default=None)
