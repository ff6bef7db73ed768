"""Silences, and which alert changes the receivers (webhooks) are told of. Pure: no I/O.

An operator silences an alert (its key, ``RULE-ID:SUBJECT``) or a whole rule (its ID) until
a time. A silenced alert still shows, as silenced, and its history still records it; only
the receivers hear nothing of it while the silence lasts. :meth:`Silences.notifications`
brings the receivers up to date with what fires, leaving silenced alerts as they were: an
alert that started firing during a silence is sent when the silence ends if it still fires;
one whose firing was sent and that resolved during a silence is sent as resolved then (a
PagerDuty incident does not stay open). The state (silences, what the receivers were told)
is plain JSON that the dashboard keeps with the alerts' own in its history file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .alerts import Alert, Transition

MAX_MINUTES = 7 * 24 * 60.0
"""The longest silence: a week (a silence is a pause, not a way to delete a rule)."""


def covers(silence: str, key: str) -> bool:
    """Whether the silence of ``silence`` (an alert key or a rule ID) covers alert ``key``."""
    return key == silence or key.split(":", 1)[0] == silence


class Silences:
    """Silences by key until a time, and the alerts whose firing the receivers were sent."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}
        self.notified: dict[str, Alert] = {}

    def silence(self, key: str, until: float) -> None:
        """Silence ``key`` (an alert key or a rule ID) until ``until``; a time in the past
        lifts the silence."""
        self.until[key] = until

    def active(self, now: float) -> dict[str, float]:
        """The silences in force at ``now``, by key (those over are forgotten)."""
        self.until = {key: until for key, until in self.until.items() if until > now}
        return dict(self.until)

    def silenced(self, key: str, now: float) -> float | None:
        """Until when alert ``key`` is silenced (the latest of the silences covering it), or
        None if it is not."""
        ends = [
            until for silence, until in self.until.items() if until > now and covers(silence, key)
        ]
        return max(ends, default=None)

    def notifications(self, firing: Mapping[str, Alert], now: float) -> list[Transition]:
        """What the receivers must be sent at ``now`` so that they know of every alert of
        ``firing`` (by key) and of none other, silenced alerts left as they were."""
        out: list[Transition] = []
        for key, alert in firing.items():
            if key in self.notified:
                self.notified[key] = alert  # its resolution will say what it said last
            elif self.silenced(key, now) is None:
                self.notified[key] = alert
                out.append(Transition("firing", alert, now))
        for key in [k for k in self.notified if k not in firing]:
            if self.silenced(key, now) is None:
                out.append(Transition("resolved", self.notified.pop(key), now))
        return out

    def state(self) -> dict[str, Any]:
        """What to remember across a restart, as JSON-ready data."""
        notified = {key: alert.as_json() for key, alert in self.notified.items()}
        return {"until": dict(self.until), "notified": notified}

    def restore(self, state: Mapping[str, Any] | None, firing: Mapping[str, Alert]) -> None:
        """Take back a :meth:`state`. Without one (a file of a dashboard before silences),
        every alert firing was sent."""
        if state is None:
            self.notified = dict(firing)
            return
        self.until = {str(k): float(t) for k, t in state.get("until", {}).items()}
        self.notified = {str(k): Alert.of_json(a) for k, a in state.get("notified", {}).items()}


def keyed(alerts: list[Alert]) -> dict[str, Alert]:
    """``alerts`` by their key."""
    return {alert.key: alert for alert in alerts}


def shown(alert: Alert, silences: Silences, now: float) -> dict[str, Any]:
    """An alert as the page and the API show it: with ``silenced_until`` (None if not)."""
    return {**dataclasses.asdict(alert), "silenced_until": silences.silenced(alert.key, now)}
