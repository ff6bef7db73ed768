"""``taskq-worker --metrics-port`` serves Prometheus metrics with the right counts."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest

from taskq import App, TaskFailed
from tests.support import BROKER, WorkerProcess, eventually

APP = "tests.apps.ops_app:app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sample(text: str, name: str) -> float | None:
    """The value of the sample ``name`` (with its labels, as printed) in a metrics page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


@pytest.mark.idle_extra_queue  # it reads the worker's totals (tasks in flight: none)
async def test_metrics_endpoint_counts(prefix: str, topology_cleanup: set[str]) -> None:
    pytest.importorskip("prometheus_client")
    port = free_port()
    worker = WorkerProcess(APP, prefix, "--name", "m1", "--metrics-port", str(port))
    app = App("ops-client", broker=BROKER, prefix=prefix)
    try:
        await worker.wait_ready()
        async with app:
            adds = [await app.send("add", i, i) for i in range(3)]
            assert [await h.result(timeout=30) for h in adds] == [0, 2, 4]
            with pytest.raises(TaskFailed):
                await (await app.send("fail", "boom")).result(timeout=30)

        def fetch() -> str:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())

        async def counted() -> str:
            text = await asyncio.to_thread(fetch)
            dead = 'taskq_dead_letters_total{queue="default",reason="max-attempts"}'
            return text if sample(text, dead) == 1.0 else ""

        text = await eventually(counted, what="the dead letter to be counted")
        assert sample(text, 'taskq_tasks_total{outcome="succeeded",task="add"}') == 3.0
        assert sample(text, 'taskq_tasks_total{outcome="failed",task="fail"}') == 1.0
        assert sample(text, 'taskq_task_duration_seconds_count{task="add"}') == 3.0
        assert sample(text, 'taskq_tasks_received_total{queue="default"}') == 4.0
        assert sample(text, "taskq_tasks_in_flight") == 0.0
        assert sample(text, "taskq_broker_connected") == 1.0
        assert sample(text, "taskq_prefetch") == 16.0
    finally:
        worker.kill()
