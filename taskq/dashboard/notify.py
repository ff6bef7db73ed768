"""Where alerts go besides the page: webhooks (JSON POSTs) and Prometheus metrics.

Each webhook gets one POST per change it is told of (see taskq.dashboard.silences), in order,
from one sender task, in the shape of its ``format`` (taskq.dashboard.payloads: generic, Slack,
PagerDuty). A POST that fails is retried a few times, then dropped and counted
(``webhook_failures``): alerting must never stall the dashboard. The metrics are the
Prometheus text format, written here (no client library needed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from ..redact import redact_url
from . import payloads
from .alerts import Alert, Transition
from .settings import WebhookSettings

log = logging.getLogger("taskq.dashboard")

POST_TIMEOUT = 5.0
ATTEMPTS = 3
RETRY_DELAY = 1.0
QUEUE_LIMIT = 1000


def render(target: WebhookSettings, transition: Transition, prefix: str, source: str
           ) -> dict[str, Any]:  # fmt: skip
    """The body POSTed to ``target`` for ``transition``, in its format."""
    if target.format == "slack":
        return payloads.slack(transition, prefix)
    if target.format == "pagerduty":
        key = target.routing_key.get_secret_value() if target.routing_key else ""
        return payloads.pagerduty(transition, prefix, key, target.severity, source)
    return payloads.generic(transition, prefix)


def shown_url(url: str) -> str:
    """A webhook's URL for the logs: without credentials, and without its path and query
    (a Slack webhook's path is its secret)."""
    parts = urllib.parse.urlsplit(redact_url(url))
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path.strip("/") else redact_url(url)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT) as response:
        return int(response.status)


class Webhook:
    """Sends transitions to one receiver, in order, from :meth:`run`."""

    def __init__(self, target: WebhookSettings, prefix: str, source: str = "") -> None:
        self.target = target
        self.url = target.url
        self.prefix = prefix
        self.source = source
        self.sent = 0
        self.failures = 0
        self._queue: asyncio.Queue[Transition] = asyncio.Queue(QUEUE_LIMIT)

    def __repr__(self) -> str:
        return f"<Webhook {self.target.format} {shown_url(self.url)}>"

    def send(self, transitions: Iterable[Transition]) -> None:
        """Queue transitions for sending (dropped and counted if the queue is full)."""
        for transition in transitions:
            try:
                self._queue.put_nowait(transition)
            except asyncio.QueueFull:
                self.failures += 1

    async def run(self) -> None:
        """Send queued transitions until cancelled."""
        while True:
            transition = await self._queue.get()
            body = render(self.target, transition, self.prefix, self.source)
            if await self._deliver(json.dumps(body).encode()):
                self.sent += 1
            else:
                self.failures += 1

    async def _deliver(self, body: bytes) -> bool:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await asyncio.to_thread(_post, self.url, body)
                return True
            except (OSError, urllib.error.URLError, ValueError) as exc:
                log.warning("alert webhook %s failed (attempt %d of %d): %s",
                            shown_url(self.url), attempt, ATTEMPTS, exc)  # fmt: skip
                if attempt < ATTEMPTS:
                    await asyncio.sleep(RETRY_DELAY)
        return False


# -- Prometheus ------------------------------------------------------------------------------


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, Any], Any]]
            ) -> list[str]:  # fmt: skip
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")
    return lines


def prometheus(snapshot: Mapping[str, Any], alerts: Iterable[Alert], counters: Mapping[str, int]
               ) -> str:  # fmt: skip
    """The overview ``snapshot``, the firing ``alerts`` and the dashboard's own ``counters``
    in the Prometheus text exposition format."""
    queues = snapshot["queues"]
    lines: list[str] = []
    for column, help_text in [
        ("ready", "ready messages in a work queue"),
        ("unacked", "unacked messages of a work queue (management API only)"),
        ("consumers", "consumers of a work queue"),
        ("dead", "messages in a work queue's dead-letter queue"),
        ("in_rate", "messages arriving per second"),
        ("out_rate", "messages delivered to workers per second"),
    ]:
        samples = [({"queue": q["queue"]}, q[column]) for q in queues]
        lines += _metric(f"taskq_queue_{column}", "gauge", help_text, samples)
    lines += _metric("taskq_delayed_messages", "gauge", "messages in the delay levels",
                     [({}, snapshot["delayed"])])  # fmt: skip
    workers = snapshot["workers"]
    lines += _metric("taskq_workers", "gauge", "workers that answered or sent a heartbeat",
                     [({}, len(workers))])  # fmt: skip
    lines += _metric("taskq_worker_active", "gauge", "tasks running on a worker",
                     [({"worker": w["worker"]}, w.get("active")) for w in workers])  # fmt: skip
    lines += _metric("taskq_workers_missing", "gauge", "workers gone without stopping",
                     [({}, len(snapshot["missing"]))])  # fmt: skip
    lines += _metric("taskq_alert_firing", "gauge", "1 for each alert firing now",
                     [({"rule": a.rule, "subject": a.subject}, 1) for a in alerts])  # fmt: skip
    for name, value in sorted(counters.items()):
        lines += _metric(f"taskq_dashboard_{name}_total", "counter", name.replace("_", " "),
                         [({}, value)])  # fmt: skip
    return "\n".join(lines) + "\n"
