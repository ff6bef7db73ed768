"""Prometheus metrics of a worker (``taskq-worker --metrics-port 9100``).

Needs the optional ``prometheus-client`` (``pip install 'taskq[metrics]'``), imported only
when metrics are asked for. The HTTP endpoint listens on 127.0.0.1 only: put a proxy or a
sidecar in front to expose it further.

Metrics (each worker process has its own registry, so several workers in one process do not
collide):

- ``taskq_tasks_total{task, outcome}``: outcome = succeeded | failed | retried
- ``taskq_task_duration_seconds{task}``: histogram of run times (every outcome)
- ``taskq_task_retries_total{task}``
- ``taskq_dead_letters_total{queue, reason}``
- ``taskq_tasks_received_total{queue}``
- ``taskq_tasks_in_flight``, ``taskq_tasks_reserved``, ``taskq_prefetch``,
  ``taskq_concurrency``
- ``taskq_broker_connected``: 1 while both broker connections are up, else 0
- ``taskq_hook_errors``: exceptions raised by hooks (each one is logged)

The counters are fed by a hook (:class:`WorkerMetrics`, added to the worker's hooks).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError
from .extras import require_extra
from .hooks import DeadLettered, Hook, TaskDone
from .text import printable
from .topology import logical_queue

if TYPE_CHECKING:
    from .transport import Delivery
    from .worker import Worker


def _client() -> Any:
    require_extra("metrics", "the worker's Prometheus metrics")
    return importlib.import_module("prometheus_client")


class WorkerMetrics(Hook):
    """The metrics of one worker: a hook that counts what happens to its tasks."""

    def __init__(self, worker: Worker) -> None:
        prom = _client()
        self.registry = prom.CollectorRegistry()
        reg = self.registry
        self.tasks = prom.Counter(
            "taskq_tasks", "Tasks finished, by outcome", ["task", "outcome"], registry=reg
        )
        self.duration = prom.Histogram(
            "taskq_task_duration_seconds", "Task run time", ["task"], registry=reg
        )
        self.retries = prom.Counter(
            "taskq_task_retries", "Tasks scheduled for another attempt", ["task"], registry=reg
        )
        self.dead_letters = prom.Counter(
            "taskq_dead_letters", "Messages dead-lettered", ["queue", "reason"], registry=reg
        )
        self.received = prom.Counter(
            "taskq_tasks_received", "Deliveries received", ["queue"], registry=reg
        )
        gauges = {
            "taskq_tasks_in_flight": ("Tasks running now", lambda: len(worker.active)),
            "taskq_tasks_reserved": ("Deliveries waiting for a slot", lambda: worker.reserved),
            "taskq_prefetch": ("Deliveries held at most per queue", lambda: worker.prefetch),
            "taskq_concurrency": ("Tasks run at once at most", lambda: worker.concurrency),
            "taskq_broker_connected": (
                "1 while connected to the broker",
                lambda: 1.0 if worker.connected else 0.0,
            ),
            "taskq_hook_errors": ("Exceptions raised by hooks", lambda: worker.hook_errors),
        }
        for name, (doc, read) in gauges.items():
            prom.Gauge(name, doc, registry=reg).set_function(read)

    def on_received(self, delivery: Delivery) -> None:
        """Count a delivery received."""
        self.received.labels(logical_queue(delivery.queue)).inc()

    async def on_success(self, done: TaskDone) -> None:
        """Count a success and its run time."""
        self._finished(done, "succeeded")

    async def on_failure(self, done: TaskDone) -> None:
        """Count a failure and its run time."""
        self._finished(done, "failed")

    async def on_retry(self, done: TaskDone) -> None:
        """Count a retry and its run time."""
        self._finished(done, "retried")
        self.retries.labels(printable(done.envelope.task_name)).inc()

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        """Count a dead-lettered message."""
        self.dead_letters.labels(logical_queue(dead.delivery.queue), dead.reason).inc()

    def _finished(self, done: TaskDone, outcome: str) -> None:
        task = printable(done.envelope.task_name)
        self.tasks.labels(task, outcome).inc()
        self.duration.labels(task).observe(done.runtime)

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        data: bytes = _client().generate_latest(self.registry)
        return data


def serve(worker: Worker, port: int, host: str = "127.0.0.1") -> Any:
    """Start the metrics endpoint of ``worker`` on ``host:port`` (a daemon thread); return the
    HTTP server (``shutdown()`` stops it). ConfigurationError if the port cannot be bound."""
    metrics = WorkerMetrics(worker)
    try:
        server, _thread = _client().start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    worker.add_hook(metrics)
    return server
