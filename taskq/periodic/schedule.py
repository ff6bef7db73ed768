"""When a periodic entry fires: fixed intervals and cron expressions. Pure: no I/O, no clock.

Every replica computes the same ticks, whenever it started:

- ``Every``: ticks are ``start + k * interval`` for k >= 0, with ``start`` the Unix epoch
  unless given. ``every=60`` fires on each whole minute of UTC, never "60 s after this
  process started".
- ``Cron``: a five-field expression (minute hour day-of-month month day-of-week) evaluated by
  cronsim in the entry's time zone. cronsim follows Debian cron across DST changes: an
  expression with a fixed minute and hour (``30 2 * * *``) fires once a day; on the night
  clocks spring forward past 02:30 it fires when the gap ends (03:00 local), and on the night
  clocks fall back it fires at the first 02:30 only. An expression with a wildcard or step in
  the minute or hour field fires at every real instant that matches.

Ticks are timezone-aware UTC datetimes in whole milliseconds.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import zoneinfo

from cronsim import CronSim, CronSimError

from ..exceptions import ConfigurationError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
MIN_INTERVAL = dt.timedelta(seconds=1)
# cronsim's reverse iteration is only a first guess near a DST change (on a fall-back night
# it can miss the day's first occurrence); the answer is then found going forward from this
# far before the guess, further than any DST shift in the tz database.
_DST_MARGIN = dt.timedelta(hours=3)


def to_ms(instant: dt.datetime) -> int:
    """Milliseconds since the Unix epoch (floored) of an aware datetime."""
    return (instant - EPOCH) // MS


def from_ms(ms: int) -> dt.datetime:
    """The aware UTC datetime ``ms`` milliseconds after the Unix epoch."""
    return EPOCH + ms * MS


def iso(instant: dt.datetime) -> str:
    """``2024-03-31T01:00:00Z`` (with ``.123`` when there are milliseconds)."""
    utc = instant.astimezone(dt.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}"
    return text + "Z"


class Schedule(abc.ABC):
    """The ticks of one periodic entry."""

    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A text that changes when the ticks change (kept with the entry's state: a
        different fingerprint after a deploy means the schedule was changed in code)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The schedule for people: ``every 30s``, ``cron '0 3 * * *' Europe/Berlin``."""

    @abc.abstractmethod
    def after(self, instant: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``instant`` (None if there is none)."""

    def latest(self, after: dt.datetime, until: dt.datetime) -> dt.datetime | None:
        """The last tick in ``(after, until]``, or None."""
        found = None
        tick = self.after(after)
        while tick is not None and tick <= until:
            found, tick = tick, self.after(tick)
        return found

    def between(self, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
        """The first ``limit`` ticks in ``(after, until]``, in order."""
        ticks: list[dt.datetime] = []
        tick = self.after(after)
        while tick is not None and tick <= until and len(ticks) < limit:
            ticks.append(tick)
            tick = self.after(tick)
        return ticks


@dataclasses.dataclass(frozen=True, slots=True)
class Every(Schedule):
    """Ticks every ``interval_ms`` milliseconds from ``start_ms`` (0: the Unix epoch)."""

    interval_ms: int
    start_ms: int = 0

    @property
    def fingerprint(self) -> str:
        return f"every:{self.interval_ms}@{self.start_ms}"

    def describe(self) -> str:
        text = f"every {_duration(self.interval_ms)}"
        return text if not self.start_ms else f"{text} from {iso(from_ms(self.start_ms))}"

    def after(self, instant: dt.datetime) -> dt.datetime:
        k = max(0, (to_ms(instant) - self.start_ms) // self.interval_ms + 1)
        return from_ms(self.start_ms + k * self.interval_ms)

    def latest(self, after: dt.datetime, until: dt.datetime) -> dt.datetime | None:
        k = (to_ms(until) - self.start_ms) // self.interval_ms
        if k < 0:
            return None
        tick = from_ms(self.start_ms + k * self.interval_ms)
        return tick if tick > after else None

    def between(self, after: dt.datetime, until: dt.datetime, limit: int) -> list[dt.datetime]:
        first = self.after(after)
        count = 0 if first > until else (to_ms(until) - to_ms(first)) // self.interval_ms + 1
        step = self.interval_ms * MS
        return [first + i * step for i in range(min(count, limit))]


@dataclasses.dataclass(frozen=True, slots=True)
class Cron(Schedule):
    """Ticks of a five-field cron expression in time zone ``timezone`` (see the module doc)."""

    expression: str
    timezone: str = "UTC"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def fingerprint(self) -> str:
        return f"cron:{self.expression}@{self.timezone}"

    def describe(self) -> str:
        return f"cron '{self.expression}' {self.timezone}"

    def after(self, instant: dt.datetime) -> dt.datetime | None:
        ticks = CronSim(self.expression, instant.astimezone(self.zone))
        # On a fall-back night, going forward from the repeated hour can yield the day's
        # first occurrence, which is before `instant`: skip what is not strictly after it.
        for tick in ticks:
            utc = tick.astimezone(dt.UTC)
            if utc > instant:
                return utc
        return None

    def latest(self, after: dt.datetime, until: dt.datetime) -> dt.datetime | None:
        backwards = CronSim(self.expression, until.astimezone(self.zone), reverse=True)
        guess = next(backwards, None)
        if guess is None:
            return None
        start = max(after, min(guess.astimezone(dt.UTC), until) - _DST_MARGIN)
        return Schedule.latest(self, start, until)


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"


def schedule_of(
    *,
    every: float | dt.timedelta | None,
    cron: str | None,
    timezone: str,
    start: dt.datetime | None,
) -> Schedule:
    """The Schedule that ``app.periodic(...)`` asks for; ConfigurationError saying what is
    wrong otherwise (both or neither of every/cron, a bad interval, a bad cron expression, an
    unknown time zone, a naive start)."""
    if (every is None) == (cron is None):
        raise ConfigurationError("a periodic entry needs exactly one of every= or cron=")
    zone = _zone(timezone)
    if cron is not None:
        if start is not None:
            raise ConfigurationError("start= goes with every=, not with cron=")
        return _cron(cron, zone)
    assert every is not None
    interval = every if isinstance(every, dt.timedelta) else _seconds(every)
    if interval < MIN_INTERVAL or interval % MS:
        raise ConfigurationError(
            f"every= must be at least 1 second, in whole milliseconds; got {interval}"
        )
    if start is not None and start.tzinfo is None:
        raise ConfigurationError("start= must be a timezone-aware datetime")
    return Every(interval // MS, to_ms(start) if start is not None else 0)


def _seconds(value: float) -> dt.timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"every= takes seconds or a timedelta, got {value!r}")
    try:
        return dt.timedelta(seconds=value)
    except (OverflowError, ValueError) as exc:
        raise ConfigurationError(f"every={value!r} is not a usable interval") from exc


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r} (use an IANA name)") from exc


def _cron(expression: str, zone: zoneinfo.ZoneInfo) -> Cron:
    if len(expression.split()) != 5:
        raise ConfigurationError(
            f"cron expression {expression!r} must have five fields: "
            "minute hour day-of-month month day-of-week"
        )
    schedule = Cron(expression, zone.key)
    try:
        first = schedule.after(dt.datetime.now(dt.UTC))
    except CronSimError as exc:
        raise ConfigurationError(f"bad cron expression {expression!r}: {exc}") from exc
    if first is None:
        raise ConfigurationError(f"cron expression {expression!r} never fires")
    return schedule
