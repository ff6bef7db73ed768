"""The Dashboard: owns the sources, the history, the alerts and the web server of one run.

``await Dashboard(app, settings).run(stop)`` with the App open: it binds its event queue,
then, in one TaskGroup, samples the broker and the workers every ``sample_interval``
seconds (and re-reads an alert rules file that changed), writes event batches (and the
queues' new rate readings) to the history twice a second, sends alert changes to the
webhooks (taskq.dashboard.alerting), and serves HTTP, until ``stop`` is set. The web layer
(taskq.dashboard.web) calls the methods below; none of them blocks the loop (SQLite runs in
a thread).

Broker use: the App's two connections (one publishes and declares, one consumes the events
and the control replies); see docs/operations/dashboard.md for the measured cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import uvicorn

from .. import control, dlq
from ..app import App
from ..cancel import CancelResult, cancel_task
from ..cancel.revocation import CANCELLED_TYPE
from ..exceptions import LifecycleError
from ..limits.changes import FollowedChanges, LimitChange
from ..redact import redact_url
from ..settings import check_queue_name
from .alerting import Alerting
from .alerts import QueueReading, Reading
from .history import CANCELLED, REPLAYED, WORKFLOW_LISTED, History, Retention
from .live import Live
from .lookup import Lookup
from .notify import prometheus
from .periodic import Periodic
from .security import new_secret
from .settings import DashboardSettings
from .sources import EventFeed, Sampler

log = logging.getLogger("taskq.dashboard")

WRITE_INTERVAL = 0.5
PRUNE_INTERVAL = 60.0
RECENT_TASKS = 15
DEAD_PAGE = 50  # dead letters per page
DEAD_LISTED = 5000  # dead letters that pages reach at most (each page reads those before it)
TASKS_PAGE = 100
WORKFLOW_ON_TASK = 100  # members of its workflow a task's page lists (its workflow's page: all)
CANCEL_WAIT = 10.0  # seconds a cancel with ``wait`` waits for a running task to stop
ALERTS_KEY = "alerts"
SECRET_KEY = "secret"


class DashboardState(enum.StrEnum):
    """NEW -> RUNNING -> STOPPED."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Ticker:
    """Wakes every waiter at each tick (new readings, new history)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def tick(self) -> None:
        """Wake the current waiters."""
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> None:
        """Return at the next tick, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the dashboard's ``stop`` event decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Dashboard:
    """One dashboard run for an open App (see the module doc)."""

    def __init__(self, app: App, settings: DashboardSettings) -> None:
        self.app = app
        self.settings = settings
        self.live = Live(app.names, history_points=settings.history_points)
        self.alerting = Alerting(settings, app.names.prefix)
        self.ticker = Ticker()
        self.closing = asyncio.Event()
        failures = Retention(settings.history_failures_max_age, settings.history_max_failures)
        self.history = History(settings.history_path, max_age=settings.history_max_age,
                               max_tasks=settings.history_max_tasks, failures=failures,
                               rates_kept=settings.chart_seconds)  # fmt: skip
        # Pruned every minute, or sooner after writing a tenth of the smaller bound.
        self._prune_after = max(1, min(settings.history_max_tasks,
                                       settings.history_max_failures) // 10)  # fmt: skip
        self.secret = self._secret()
        self.feed = EventFeed(app, self.live)
        self.sampler = Sampler(app, settings, self.live)
        self.url = _url(settings.host, settings.port)
        self.state = DashboardState.NEW
        self._recent: list[dict[str, Any]] = []
        self._stored = 0
        self._dlq_lock = asyncio.Lock()
        self.lookup = Lookup(app, self._dlq_lock, limit=DEAD_LISTED)
        self.periodic = Periodic(app)
        self._saved: dict[str, Any] = {}
        self.limit_changes = FollowedChanges(app.transport, app.names, app.settings.publish_timeout)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until ``stop`` is set (see the module doc). Runs once (LifecycleError)."""
        if self.state is not DashboardState.NEW:
            raise LifecycleError("a Dashboard runs once")
        self.state = DashboardState.RUNNING
        from .web import build  # the web layer needs the optional dependencies

        listener = socket.create_server((self.settings.host, self.settings.port))
        try:
            self.url = _url(self.settings.host, listener.getsockname()[1])
            await asyncio.to_thread(self._restore_alerts)
            self.live.restore(await asyncio.to_thread(self.history.rate_readings))
            await self.feed.start()
            await self._refresh_recent()
            server = _Server(uvicorn.Config(
                build(self), log_level="warning", access_log=False, lifespan="off",
                timeout_graceful_shutdown=2,
            ))  # fmt: skip
            async with asyncio.TaskGroup() as tg:
                loops = [tg.create_task(self._sample_loop()), tg.create_task(self._write_loop())]
                loops += [tg.create_task(webhook.run()) for webhook in self.alerting.webhooks]
                serving = tg.create_task(server.serve([listener]))
                await _started(server, serving)
                if on_ready is not None:
                    on_ready(self.url)
                await _first(stop.wait(), serving)
                self.closing.set()
                self.ticker.tick()  # live streams see `closing` and end
                server.should_exit = True
                for loop in loops:
                    loop.cancel()
            await asyncio.to_thread(self.history.write, self.feed.take(), self.live.take_readings())
        finally:
            listener.close()
            self.state = DashboardState.STOPPED
            await self.limit_changes.stop()
            self.history.close()

    async def _sample_loop(self) -> None:
        while True:
            await self.sampler.sample()
            rules = await asyncio.to_thread(self.alerting.read_rules)  # the file changed?
            if rules is not None:
                self.alerting.use_rules(rules, time.time())
            self._evaluate(time.time())
            await asyncio.to_thread(self._save_alerts)
            self.ticker.tick()
            await asyncio.sleep(self.settings.sample_interval)

    async def _write_loop(self) -> None:
        next_prune, written = time.monotonic(), 0
        while True:
            started = time.monotonic()
            batch, readings = self.feed.take(), self.live.take_readings()
            if batch or readings:  # the queues' readings ride with the events' transaction
                stored = await asyncio.to_thread(self.history.write, batch, readings)
                self._stored += stored
                written += stored
            if batch:
                await self._refresh_recent()
                self.ticker.tick()
            if started >= next_prune or written >= self._prune_after:
                dropped = await asyncio.to_thread(self.history.prune)
                if dropped:
                    log.info("history: dropped %d old task(s)", dropped)
                next_prune, written = time.monotonic() + PRUNE_INTERVAL, 0
            # A write that took longer than the interval is followed by the next one at once:
            # under load the history keeps up instead of writing one batch per interval.
            await asyncio.sleep(max(0.0, WRITE_INTERVAL - (time.monotonic() - started)))

    async def _refresh_recent(self) -> None:
        self._recent = await asyncio.to_thread(self.history.search, "", "", RECENT_TASKS)

    def _evaluate(self, now: float) -> None:
        queues = {
            q["queue"]: QueueReading(q["ready"] or 0, q["consumers"] or 0, q["dead"])
            for q in self.live.queue_rows()
            if q["ready"] is not None
        }
        missing = [m["worker"] for m in self.live.missing]
        reading = Reading(now, queues, missing, lambda w: self.live.failures(now, w))
        self.alerting.evaluate(reading)

    def _secret(self) -> str:
        """The secret of the pages' CSRF tokens, the same across restarts (pages opened
        before one still act after it)."""
        secret = self.history.load(SECRET_KEY)
        if not isinstance(secret, str):
            secret = new_secret()
            self.history.save(SECRET_KEY, secret)
        return secret

    def _restore_alerts(self) -> None:
        state = self.history.load(ALERTS_KEY)
        if state is not None:
            self.alerting.restore(state)
            self._saved = state

    def _save_alerts(self) -> None:
        """Keep the alerts' state in the history file when it changed (a dead-letter
        baseline, a firing alert, a silence): a restart neither sends a firing alert again
        nor loses its resolution or a silence."""
        state = self.alerting.state()
        if state != self._saved:
            self.history.save(ALERTS_KEY, state)
            self._saved = state

    # -- what the pages and the API show -----------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Workers, queues, dead letters, delayed tasks, alerts and recent tasks."""
        now = time.time()
        snapshot = self.live.snapshot(now)
        snapshot.update(self.alerting.view(now))  # alerts, transitions, silences, rules
        snapshot["recent"] = self._recent
        snapshot["broker"] = self.app.settings.redacted_broker()
        snapshot["prefix"] = self.app.names.prefix
        return snapshot

    def counters(self) -> dict[str, int]:
        """The dashboard's own counters (for /metrics)."""
        return {
            "events_received": self.live.events_received,
            "events_undecodable": self.feed.dropped,
            "history_dropped": self.feed.history_dropped,
            "history_stored": self._stored,
            **self.alerting.counters(),
        }

    def metrics(self) -> str:
        """Prometheus text: queues, workers, alerts, and the dashboard's own counters."""
        return prometheus(self.overview(), self.alerting.alerts.active(), self.counters())

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """A task's history with its timeline; if it was pruned, what was known of it with
        ``pruned`` true and no timeline; if the dashboard never saw it, what the result store
        or a dead-letter queue knows (with ``source``, see taskq.dashboard.lookup); None if
        nothing does."""
        found = await asyncio.to_thread(self.history.task, task_id)
        if found is not None:
            # A task that sent a workflow (or other tasks) is the root of their tree.
            workflow = await self.workflow(found["root_id"] or task_id, WORKFLOW_ON_TASK)
            if workflow["total"] > 1:
                found["workflow"] = workflow
            return found
        pruned = await asyncio.to_thread(self.history.pruned, task_id)
        if pruned is not None:
            return {**pruned, "pruned": True, "timeline": []}
        with_dead = [name for name, view in self.live.queues.items() if view.dead]
        return await self.lookup.find(task_id, with_dead)

    async def limits(self) -> list[dict[str, Any]]:
        """Each task's limits: as declared (``@app.task(rate_limit=..., concurrency_limit=...)``)
        and as changed at runtime (``taskq control``, this dashboard), which workers apply."""
        app = self.app
        made = await self.limit_changes.current()
        rows = []
        for name in sorted({*app.tasks, *made}):
            task = app.tasks.get(name)
            declared_rate = task.config.rate_limit if task else None
            declared_concurrency = task.config.concurrency if task else None
            change = made.get(name)
            rows.append({
                "task": name, "known": task is not None,
                "rate": str(declared_rate) if declared_rate else None,
                "concurrency": declared_concurrency.limit if declared_concurrency else None,
                "rate_now": change.rate if change else None,
                "concurrency_now": change.concurrency if change else None,
            })  # fmt: skip
        return rows

    async def change_limits(self, change: LimitChange) -> None:
        """Make ``change`` for every worker, now and after restarts (BrokerError if not)."""
        await self.limit_changes.make(change)
        log.info("limits of %s changed: %s", change.task, change.as_json())

    async def workflow(self, root_id: str, limit: int = WORKFLOW_LISTED) -> dict[str, Any]:
        """The tasks of workflow ``root_id`` in order, up to ``limit``, with their count per
        state (see History.workflow)."""
        return await asyncio.to_thread(self.history.workflow, root_id, limit)

    async def search(
        self,
        text: str,
        state: str | Sequence[str],
        limit: int = TASKS_PAGE,
        before: float | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Tasks by ID prefix, name and state or states (newest first), updated before
        ``before``, and from ``since`` to ``until`` (see History.search)."""
        return await asyncio.to_thread(
            self.history.search, text, state, limit, before, since=since, until=until
        )

    # -- actions -----------------------------------------------------------------------------

    async def dead_letters(self, queue: str, page: int = 0) -> tuple[int, list[dlq.DeadMessage]]:
        """How many dead letters ``queue`` has, and page ``page`` (from 0) of them, oldest
        first, ``DEAD_PAGE`` a page, up to the ``DEAD_LISTED`` th."""
        start = min(max(0, page) * DEAD_PAGE, DEAD_LISTED - DEAD_PAGE)
        queue = check_queue_name(queue)
        full = self.app.names.dead_queue(queue)
        async with self._dlq_lock:
            depth = await self.app.transport.queue_depth(full)
            if depth is None:
                return 0, []
            listed = await dlq.list_dead(self.app.transport, queue, limit=start + DEAD_PAGE)
        return depth.messages, listed[start:]

    async def replay(self, queue: str, task_ids: list[str] | None) -> list[dlq.DeadMessage] | None:
        """Send dead letters of ``queue`` back to it: those of ``task_ids``, or all (None).
        None if ``queue`` has no dead-letter queue (the broker would close the channel)."""
        queue = check_queue_name(queue)
        select = dlq.selector(task_ids or (), everything=task_ids is None)
        async with self._dlq_lock:
            if await self.app.transport.queue_depth(self.app.names.dead_queue(queue)) is None:
                return None
            began = time.time()  # the replay comes before whatever the worker does with it
            replayed = await dlq.replay(self.app.sender, queue, select)
        record = [{"type": REPLAYED, "task_id": d.task_id, "time": began, "task": d.task_name,
                   "queue": queue} for d in replayed if d.task_id]  # fmt: skip
        self._stored += await asyncio.to_thread(self.history.write, record)
        log.info("replayed %d dead letter(s) of %s", len(replayed), queue)
        return replayed

    async def purge(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        queue = check_queue_name(queue)
        async with self._dlq_lock:
            if await self.app.transport.queue_depth(self.app.names.dead_queue(queue)) is None:
                return 0
            purged = await dlq.purge_dead(self.app.transport, queue)
        log.info("purged %d dead letter(s) of %s", purged, queue)
        return purged

    async def cancel(self, task_id: str, reason: str, *, wait: bool = False) -> CancelResult:
        """Cancel ``task_id`` (taskq.cancel.cancel_task; with ``wait``, at most CANCEL_WAIT
        seconds for a running task to stop). Unless the result store says the task had ended
        first, the history records it CANCELLED at once: a queued or delayed task may meet no
        worker for a long time. BrokerError if the cancel cannot be published."""
        done = await cancel_task(self.app, task_id, reason=reason, wait=wait, timeout=CANCEL_WAIT)
        if done.cancelled or done.status is None:
            record = [{"type": CANCELLED, "task_id": task_id, "time": time.time(),
                       "error": CANCELLED_TYPE, "error_message": reason}]  # fmt: skip
            self._stored += await asyncio.to_thread(self.history.write, record)
            self.ticker.tick()
        log.info("cancelled task %r (status %s): %r", task_id, done.status, reason)
        return done

    async def silence(self, key: str, minutes: float) -> float:
        """Silence alert or rule ``key`` for ``minutes`` (0: lift the silence), kept in the
        history file at once; until when. UnknownAlert, ValueError: see Alerting.silence."""
        until = self.alerting.silence(key, minutes, time.time())
        await asyncio.to_thread(self._save_alerts)
        self.ticker.tick()
        return until

    async def shutdown(self, worker: str) -> bool:
        """Ask ``worker`` to stop gracefully; whether it answered."""
        result = await control.broadcast(self.app, "shutdown", timeout=3.0, worker=worker,
                                         memory=self.sampler.memory)  # fmt: skip
        return bool(result.replies)

    def describe(self) -> dict[str, Any]:
        """Where this dashboard reads from (no credentials)."""
        return {"broker": redact_url(self.app.settings.broker), "prefix": self.app.names.prefix,
                "history": str(self.settings.history_path)}  # fmt: skip


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """Wait until uvicorn listens (or failed to: its error is raised)."""
    while not server.started:
        if serving.done():
            serving.result()
            raise OSError("the web server stopped before it started")
        await asyncio.sleep(0.02)


async def _first(waiting: Any, serving: asyncio.Task[None]) -> None:
    """Return when ``waiting`` finishes or the server stops by itself."""
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
