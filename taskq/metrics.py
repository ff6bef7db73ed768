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
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError
from .extras import require_extra

if TYPE_CHECKING:
    from .worker import Worker

OUTCOMES = {"task.succeeded": "succeeded", "task.failed": "failed", "task.retried": "retried"}


def _client() -> Any:
    require_extra("metrics", "the worker's Prometheus metrics")
    return importlib.import_module("prometheus_client")


class WorkerMetrics:
    """The metrics of one worker, fed by its events (see :class:`taskq.events.WorkerEvents`)."""

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
        }
        for name, (doc, read) in gauges.items():
            prom.Gauge(name, doc, registry=reg).set_function(read)

    def __call__(self, kind: str, fields: Mapping[str, Any]) -> None:
        """An events listener: count what the event says."""
        task = str(fields.get("task"))
        outcome = OUTCOMES.get(kind)
        if outcome is not None:
            self.tasks.labels(task, outcome).inc()
            self.duration.labels(task).observe(float(fields.get("runtime", 0.0)))
            if outcome == "retried":
                self.retries.labels(task).inc()
        elif kind == "task.dead-lettered":
            self.dead_letters.labels(str(fields.get("queue")), str(fields.get("reason"))).inc()
        elif kind == "task.received":
            self.received.labels(str(fields.get("queue"))).inc()

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
    worker.events.listeners.append(metrics)
    return server
