"""The JSON bodies POSTed to a webhook for an alert change, one shape per receiver. Pure.

- ``generic``: ``{"status": "firing"|"resolved", "alert": {rule, subject, message, since,
  key}, "time", "prefix"}``;
- ``slack``: a Slack incoming webhook's message: ``text`` (the notification's line) and
  ``blocks`` (the same, with the details);
- ``pagerduty``: a PagerDuty Events API v2 event: ``trigger`` when an alert fires,
  ``resolve`` when it stops, both with the same ``dedup_key`` (the prefix and the alert's
  key), so that PagerDuty resolves the incident it opened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Literal

from .alerts import Transition

Format = Literal["generic", "slack", "pagerduty"]
Severity = Literal["critical", "error", "warning", "info"]
SUMMARY_LIMIT = 1024  # characters of a PagerDuty summary (its limit)
DEDUP_LIMIT = 255  # characters of a PagerDuty dedup_key (its limit)


def generic(transition: Transition, prefix: str) -> dict[str, Any]:
    """The generic body (taskq's own shape)."""
    return {
        "status": transition.status,
        "alert": transition.alert.as_json(),
        "time": transition.time,
        "prefix": prefix,
    }


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds")


def _escape(text: str) -> str:
    """Text for Slack's mrkdwn: ``&``, ``<`` and ``>`` are its control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(transition: Transition, prefix: str) -> dict[str, Any]:
    """A Slack incoming webhook's message."""
    alert = transition.alert
    status = "FIRING" if transition.status == "firing" else "RESOLVED"
    line = f"[{status}] taskq {prefix}: {alert.rule} {alert.subject}: {alert.message}"
    details = (f"*{status}* `{_escape(alert.rule)}` {_escape(alert.subject)}\n"
               f"{_escape(alert.message)}")  # fmt: skip
    context = f"prefix `{_escape(prefix)}` · since {_iso(alert.since)} · key `{_escape(alert.key)}`"
    return {
        "text": _escape(line),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": details}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def dedup_key(transition: Transition, prefix: str) -> str:
    """The PagerDuty ``dedup_key`` of an alert: the same for its trigger and its resolve (a
    key too long for PagerDuty is hashed)."""
    key = f"taskq/{prefix}/{transition.alert.key}"
    if len(key) > DEDUP_LIMIT:
        key = f"taskq/{prefix}/{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def pagerduty(
    transition: Transition, prefix: str, routing_key: str, severity: Severity, source: str
) -> dict[str, Any]:
    """A PagerDuty Events API v2 event (``source``: where the dashboard runs)."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": dedup_key(transition, prefix),
    }
    if transition.status == "resolved":
        return {**event, "event_action": "resolve"}
    alert = transition.alert
    summary = f"taskq {prefix}: {alert.message}"[:SUMMARY_LIMIT]
    return {
        **event,
        "event_action": "trigger",
        "payload": {
            "summary": summary,
            "severity": severity,
            "source": source,
            "timestamp": _iso(transition.time),
            "component": alert.subject,
            "group": prefix,
            "class": alert.rule,
            "custom_details": {
                "rule": alert.rule,
                "subject": alert.subject,
                "message": alert.message,
                "since": _iso(alert.since),
                "key": alert.key,
            },
        },
    }
