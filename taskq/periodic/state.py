"""What the schedulers of an App remember between them: per entry, how far its ticks are
settled. Pure: encoding, decoding and merging of the one state record.

The record is a msgpack map: ``v`` version, ``by`` the scheduler that wrote it, ``host`` the
machine it runs on (absent in records of taskq before it: read as unknown), ``since`` when
that scheduler became active and ``at`` when it wrote (Unix ms), and ``e``: entry name
-> ``[cursor, last_fired, fingerprint]``. Every tick at or before ``cursor`` is settled
(fired, or skipped by the catch-up policy); ``last_fired`` is the last tick actually fired
(or None); ``fingerprint`` identifies the schedule the cursor belongs to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .. import codec
from ..exceptions import DecodeError
from .schedule import from_ms, to_ms

log = logging.getLogger("taskq.beat")

VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True)
class EntryState:
    """How far one entry's ticks are settled."""

    cursor: dt.datetime
    last_fired: dt.datetime | None
    fingerprint: str


@dataclasses.dataclass(frozen=True, slots=True)
class BeatState:
    """The state record: every entry's EntryState, and who wrote it when (and where:
    ``host``, empty if not known)."""

    entries: Mapping[str, EntryState] = dataclasses.field(default_factory=dict)
    holder: str = ""
    since: dt.datetime | None = None
    written_at: dt.datetime | None = None
    host: str = ""

    def encode(self) -> bytes:
        """The record's bytes (msgpack)."""
        return codec.pack(
            {
                "v": VERSION,
                "by": self.holder,
                "host": self.host,
                "since": _ms(self.since),
                "at": _ms(self.written_at),
                "e": {
                    name: [to_ms(s.cursor), _ms(s.last_fired), s.fingerprint]
                    for name, s in self.entries.items()
                },
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> BeatState:
        """The record in ``body``; DecodeError if it is not one."""
        data = codec.unpack(body)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise DecodeError("not a taskq beat state record (version 1)")
        try:
            entries = {
                str(name): EntryState(from_ms(cursor), _time(fired), str(fingerprint))
                for name, (cursor, fired, fingerprint) in data["e"].items()
            }
            host = str(data.get("host") or "")
            return cls(entries, str(data["by"]), _time(data["since"]), _time(data["at"]), host)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(f"malformed beat state record: {exc}") from exc

    def merge(self, other: BeatState) -> BeatState:
        """Both records in one: per entry, the state that got further (the larger cursor).

        Records only ever move forward, so the furthest one is the newest; two records exist
        at once only when two schedulers started on an empty queue together.
        """
        entries = dict(self.entries)
        for name, theirs in other.entries.items():
            ours = entries.get(name)
            if ours is None or theirs.cursor > ours.cursor:
                entries[name] = theirs
        newer = other if _later(other.written_at, self.written_at) else self
        return BeatState(entries, newer.holder, newer.since, newer.written_at, newer.host)


def merged(bodies: Iterable[bytes]) -> BeatState:
    """The merge of every record in ``bodies``; one that does not decode is left out with a
    warning (it cannot say how far anything got)."""
    state = BeatState()
    for body in bodies:
        try:
            state = state.merge(BeatState.decode(body))
        except DecodeError as exc:
            log.warning("ignoring a beat state record that does not decode: %s", exc)
    return state


def _ms(instant: dt.datetime | None) -> int | None:
    return None if instant is None else to_ms(instant)


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a time must be Unix milliseconds, got {value!r}")
    return from_ms(value)


def _later(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    return a is not None and (b is None or a > b)
