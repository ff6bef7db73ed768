"""What ``taskq beat list`` shows: each entry's schedule, next tick and last fired tick, and
which scheduler is active. Read from the broker without taking part in the lease: the
schedulers' latest state record is peeked from its mirror queue, and the lease queue's
consumer count says how many schedulers run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ..exceptions import BrokerError, DecodeError
from ..topology import Names
from ..transport import Transport
from .entry import PeriodicEntry
from .schedule import iso
from .state import BeatState


async def read_status(
    transport: Transport, names: Names, entries: Mapping[str, PeriodicEntry], now: dt.datetime
) -> dict[str, Any]:
    """The status as plain data (what ``--json`` prints). ``active`` is None when no
    scheduler runs; ``host`` is where the active one runs (None if its record does not say:
    one written by an older taskq), ``last_write`` how recently it wrote its state (it does
    at each firing, and every minute at least). An entry's ``last_firing_id`` is the task ID
    of its ``last_fired`` tick."""
    record = await peek_state(transport, names)
    lease = await transport.queue_depth(names.beat_lease)
    schedulers = lease.consumers if lease is not None else 0
    active = None
    if record is not None and record.holder and schedulers:
        active = {
            "scheduler": record.holder,
            "host": record.host or None,
            "since": _iso(record.since),
            "last_write": _iso(record.written_at),
        }
    return {
        "active": active,
        "schedulers": schedulers,
        "entries": [_entry_row(entry, record, now) for entry in entries.values()],
    }


def _entry_row(entry: PeriodicEntry, record: BeatState | None, now: dt.datetime) -> dict[str, Any]:
    state = record.entries.get(entry.name) if record is not None else None
    current = state is not None and state.fingerprint == entry.schedule.fingerprint
    start = max(now, state.cursor) if state is not None and current else now
    last = state.last_fired if state is not None else None
    return {
        "name": entry.name,
        "queue": entry.task.config.queue,
        "schedule": entry.schedule.describe(),
        "catch_up": entry.catch_up,
        "next_tick": _iso(entry.schedule.after(start)),
        "last_fired": _iso(last),
        "last_firing_id": None if last is None else entry.firing_id(last),
    }


async def peek_state(transport: Transport, names: Names) -> BeatState | None:
    """The latest state record (None if no scheduler ever wrote one); the copy read is put
    back at once."""
    # No mirror queue: no scheduler ever ran for this prefix. Asked first, because a get from
    # a missing queue closes the channel, which others' gets (dead letters) may be using.
    if await transport.queue_depth(names.beat_status) is None:
        return None
    try:
        delivery = await transport.get(names.beat_status)
    except BrokerError:
        return None  # deleted meanwhile
    if delivery is None:
        return None
    try:
        return BeatState.decode(delivery.body)
    except DecodeError:
        return None
    finally:
        await delivery.reject(requeue=True)


def _iso(instant: dt.datetime | None) -> str | None:
    return None if instant is None else iso(instant)
