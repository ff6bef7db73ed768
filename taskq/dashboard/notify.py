"""Where alerts go besides the page: a webhook (JSON POSTs) and Prometheus metrics.

The webhook gets one POST per transition, in order, from one sender task: ``{"status":
"firing"|"resolved", "alert": {rule, subject, message, since}, "time", "prefix"}``. A POST
that fails is retried a few times, then dropped and counted (``webhook_failures``): alerting
must never stall the dashboard. The metrics are the Prometheus text format, written here
(no client library needed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from ..redact import redact_url
from .alerts import Alert, Transition

log = logging.getLogger("taskq.dashboard")

POST_TIMEOUT = 5.0
ATTEMPTS = 3
RETRY_DELAY = 1.0
QUEUE_LIMIT = 1000


def payload(transition: Transition, prefix: str) -> dict[str, Any]:
    """The JSON body POSTed for one transition."""
    return {
        "status": transition.status,
        "alert": transition.alert.as_json(),
        "time": transition.time,
        "prefix": prefix,
    }


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=POST_TIMEOUT) as response:
        return int(response.status)


class Webhook:
    """Sends transitions to one URL, in order, from :meth:`run`."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.sent = 0
        self.failures = 0
        self._queue: asyncio.Queue[Transition] = asyncio.Queue(QUEUE_LIMIT)

    def __repr__(self) -> str:
        return f"<Webhook {redact_url(self.url)}>"

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
            body = json.dumps(payload(transition, self.prefix)).encode()
            if await self._deliver(body):
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
                            redact_url(self.url), attempt, ATTEMPTS, exc)  # fmt: skip
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
