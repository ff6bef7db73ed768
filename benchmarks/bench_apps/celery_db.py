"""Celery with its database result backend (SQLAlchemy) on PostgreSQL: the app its worker
runs, and the client that measures round trip and fan-out against it.

Environment: BENCH_QUEUE (queue and exchange name), BENCH_BROKER, BENCH_DB_URL (a SQLAlchemy
URL, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), BENCH_DB_PREFIX (the
result tables are ``{prefix}_taskmeta`` and ``{prefix}_groupmeta``, dropped by the caller).

Worker: celery -A benchmarks.bench_apps.celery_db worker -P prefork -c 2 --without-gossip
--without-mingle --without-heartbeat -Q $BENCH_QUEUE
Client: python -m benchmarks.bench_apps.celery_db ROUNDTRIPS FANOUT INTERVAL
(INTERVAL: seconds between two polls of the backend; Celery's default is 0.5; with
BENCH_CELERY_POOLED=1 the client pools its connections as a forked process would). Prints one line
``RESULT {json}`` like benchmarks.bench_apps.peer_results.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from .peer_results import TIMEOUT, WARM_TIMEOUT, _measure

QUEUE = os.environ.get("BENCH_QUEUE", "bench.celerydb")
DB_URL = os.environ.get("BENCH_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PREFIX = os.environ.get("BENCH_DB_PREFIX", "bench_celery")

app = Celery(
    "bench_db", broker=os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
)
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    result_backend=f"db+{DB_URL}",
    database_table_names={"task": f"{PREFIX}_taskmeta", "group": f"{PREFIX}_groupmeta"},
    result_expires=600,
    result_extended=False,
    worker_prefetch_multiplier=64,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@worker_process_init.connect
def _pooled_sessions(**_: Any) -> None:
    # Celery means to pool its database connections in forked children, but its after-fork
    # hook (multiprocessing's) does not run under billiard's prefork: without this, each
    # result is stored on a new connection. Given here so that Celery runs at its best.
    if os.environ.get("BENCH_CELERY_POOLED") == "1":
        app.backend.session_manager._after_fork()


@app.task(name="noop")
def noop(i: int) -> int:
    return i


def measure(n: int, fanout: int, interval: float) -> dict[str, Any]:
    """Round trips one after the other, then ``fanout`` sent in a loop and joined."""
    from celery.result import ResultSet

    if os.environ.get("BENCH_CELERY_POOLED") == "1":
        # What a forked process (a prefork web server's worker) gets: Celery pools its
        # database connections only after a fork, and opens one per query otherwise.
        app.backend.session_manager._after_fork()
    assert noop.delay(-1).get(timeout=WARM_TIMEOUT, interval=interval) == -1

    def call(i: int) -> Any:
        return noop.delay(i).get(timeout=TIMEOUT, interval=interval)

    def gather(k: int) -> list[Any]:
        results = [noop.delay(i) for i in range(k)]
        return list(ResultSet(results).get(timeout=TIMEOUT * 2, interval=interval))

    return _measure(n, fanout, call, gather)


if __name__ == "__main__":
    rounds, fan, poll = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    print("RESULT " + json.dumps(measure(rounds, fan, poll)), flush=True)
