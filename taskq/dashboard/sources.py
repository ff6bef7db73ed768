"""Where the dashboard's knowledge comes from: the events exchange and periodic readings.

- :class:`EventFeed` binds an exclusive queue to ``{prefix}.events`` (everything, ``#``)
  and hands each event to the live picture and to a batch for the history. The queue has a
  length limit (oldest dropped): a dashboard that falls behind loses old events, it never
  makes the broker hold an unbounded backlog. Likewise, task events waiting for the history
  writer are capped; past the cap they are counted (``history_dropped``), not kept. Only
  workers started with ``--events`` (and clients with ``events=True``) publish events.
- :class:`Sampler` reads, every few seconds, the queue depths (management API, else passive
  declares) and the workers' ``stats`` over the control plane, which also says which workers
  are missing (taskq.control).

Neither touches the workers' hot path: events are published by the workers whether anyone
listens or not, and a control request costs a worker one small reply.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from .. import control, events
from ..app import App
from ..exceptions import BrokerError
from ..queue_depths import depths
from ..transport import Delivery
from .history import is_task_event
from .live import Live
from .settings import DashboardSettings

log = logging.getLogger("taskq.dashboard")

EVENT_BACKLOG = 200_000  # events the broker holds for a dashboard that falls behind
PENDING_LIMIT = 200_000  # task events waiting for the history writer, at most
API_RETRY = 60.0  # seconds before asking a management API that did not answer again


class EventFeed:
    """Receives every event of the App's prefix (see the module doc)."""

    def __init__(self, app: App, live: Live) -> None:
        self.app = app
        self.live = live
        self.dropped = 0
        self.history_dropped = 0
        self._batch: list[dict[str, Any]] = []

    async def start(self) -> None:
        """Bind the dashboard's queue and start receiving."""
        transport, names = self.app.transport, self.app.names
        await transport.declare_exchange(names.events, "topic")
        queue = f"{names.prefix}.dashboard.{uuid.uuid4().hex[:12]}"
        limits = {"x-max-length": EVENT_BACKLOG, "x-overflow": "drop-head"}
        await transport.listen(queue, names.events, "#", self._on_delivery, arguments=limits)

    def _on_delivery(self, delivery: Delivery) -> None:
        try:
            event = events.decode(delivery.body)
        except ValueError:
            self.dropped += 1
            return
        self.live.on_event(event)
        if not is_task_event(event):
            return
        if len(self._batch) >= PENDING_LIMIT:  # the writer is far behind: memory stays bounded
            self.history_dropped += 1
            return
        self._batch.append(event)

    def take(self) -> list[dict[str, Any]]:
        """The task events received since the last call."""
        batch, self._batch = self._batch, []
        return batch


class Sampler:
    """Reads queue depths and worker stats into the live picture."""

    def __init__(self, app: App, settings: DashboardSettings, live: Live) -> None:
        self.app = app
        self.settings = settings
        self.live = live
        self.memory = control.LastSeen.of(app)
        self._api_retry_at = 0.0 if settings.use_management else float("inf")
        self._fallback = ""  # why the management API is not used, while it is not asked

    def watched_queues(self) -> set[str]:
        """The work queues (short names) to read without the management API."""
        app = self.app
        return {
            app.settings.default_queue,
            *(task.config.queue for task in app.tasks.values()),
            *self.settings.queues,
            *self.live.seen_queues,
        }

    async def sample(self) -> None:
        """One reading of depths and workers (errors are logged: the next reading retries)."""
        try:
            await self._depths()
            await self._workers()
        except BrokerError as exc:
            log.warning("could not read the broker: %s", exc)

    async def _depths(self) -> None:
        now = time.time()
        found = await depths(
            self.app.transport, self.app.settings.broker, self.watched_queues(),
            api_url=self.settings.management_url, use_api=now >= self._api_retry_at,
        )  # fmt: skip
        source = found.source
        if not found.management and self.settings.use_management:
            if now >= self._api_retry_at:
                self._api_retry_at, self._fallback = now + API_RETRY, source
            source = self._fallback or source
        self.live.on_depths(found.rows, source, time.time())

    async def _workers(self) -> None:
        timeout = min(2.0, self.settings.sample_interval)
        asked = time.time()
        result = await control.broadcast(self.app, "stats", timeout=timeout, memory=self.memory)
        self.live.on_stats(_answers(result.replies), asked, time.time())
        self.live.on_missing(
            {"worker": m.worker, "state": m.state, "last_seen": m.last_seen} for m in result.missing
        )


def _answers(replies: Iterable[control.Reply]) -> list[tuple[str, dict[str, Any]]]:
    return [(r.worker, r.answer) for r in replies if isinstance(r.answer, dict)]
