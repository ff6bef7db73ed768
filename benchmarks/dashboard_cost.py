"""What ``taskq dashboard`` costs: its broker connections, and its CPU while idle and while
task events stream in.

    python -m benchmarks.dashboard_cost [--rates 1000,2500,5000] [--seconds 20] [--real 20000]

1. starts ``taskq dashboard`` (a subprocess, its own prefix) and counts its connections;
2. idle: its CPU over ``--seconds`` (no worker, no event);
3. synthetic load: for each rate R, publishes the events that workers with ``--events`` and
   senders with ``events=True`` publish for R tasks/s (sent, received, started, succeeded:
   4 events per task) for ``--seconds``, and measures the dashboard's CPU and whether it kept
   up (events it counted, tasks it stored, its queue's backlog). The publisher is a separate
   process, so the dashboard's own cost is what is measured, at rates this 2-core machine
   cannot reach end to end;
4. real load (``--real N``): two ``taskq-worker --events`` processes drain N no-op tasks sent
   with events on; the achieved rate, and the dashboard's CPU meanwhile.

CPU is utime + stime of the dashboard process from /proc, as % of one core. Prints a table
and writes JSON to ``--out``. Cleans up its prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.faults.broker import delete_prefix
from taskq import App, events
from taskq.message import OutgoingMessage
from taskq.topology import Names

BROKER = os.environ.get("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
APP = "benchmarks.bench_apps.taskq_app:app"
DASHBOARD_APP = "benchmarks.bench_apps.dashboard_app:app"
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rabbitmqctl(*args: str) -> str:
    # A listing fails now and then when a connection closes while it is listed: ask again.
    for _ in range(4):
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        if done.returncode == 0:
            return done.stdout
    done.check_returncode()
    return done.stdout


def connections(prefix: str) -> int:
    rows = rabbitmqctl("list_connections", "--no-table-headers", "client_properties")
    return sum(1 for row in rows.splitlines() if f"taskq:dash-{prefix}" in row)


def dashboard_queue_depth(prefix: str) -> int:
    rows = rabbitmqctl("list_queues", "--no-table-headers", "name", "messages")
    return sum(int(r.split()[1]) for r in rows.splitlines() if r.startswith(f"{prefix}.dashboard."))


def metric(url: str, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url + "metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class Dashboard:
    def __init__(self, prefix: str, state: Path) -> None:
        self.log = state / "dashboard.log"
        env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER,
               "TASKQ_STATE_DIR": str(state), "PYTHONPATH": str(ROOT),
               "TASKQ_BENCH_APP_NAME": f"dash-{prefix}"}  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "taskq.cli.admin", "--app", DASHBOARD_APP, "dashboard",
                 "--port", "0", "--no-management", "--log-level", "warning"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not (found := re.findall(r"on (http://\S+/) ", self.log.read_text())):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(self.log.read_text())
            time.sleep(0.1)
        self.url = found[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _templates() -> list[tuple[str, str]]:
    """``(event type, body template)`` of one task's events, as workers publish them
    (``{id}`` and ``{time}`` filled per task: formatting is cheaper than json.dumps, so one
    publisher process reaches the rates measured)."""
    base = {"task_id": "{id}", "task": "noop", "queue": "default", "attempt": 1,
            "worker": "bench@host.1", "hostname": "host", "pid": 1}  # fmt: skip
    kinds = [("task.sent", {"args": "42"}), ("task.received", {}),
             ("task.started", {"args": "42"}),
             ("task.succeeded", {"runtime": 0.0001, "result": "42"})]  # fmt: skip
    out = []
    for kind, extra in kinds:
        body = json.dumps({"type": kind, "time": "{time}", **base, **extra})
        out.append((kind, body.replace('"{time}"', "{time}").replace("{", "{{").replace(
            "}", "}}").replace("{{id}}", "{id}").replace("{{time}}", "{time}")))  # fmt: skip
    return out


def _event(kind: str, body: str) -> OutgoingMessage:
    return OutgoingMessage(body=body.encode(), type=kind, persistent=False,
                           content_type=events.CONTENT_TYPE)  # fmt: skip


async def publish_events(prefix: str, rate: int, seconds: float) -> int:
    """Publish the events of ``rate`` tasks/s for ``seconds``; return the tasks published."""
    app = App("dash-publisher", broker=BROKER, prefix=prefix)
    names = Names(prefix)
    templates = _templates()
    run, done = uuid.uuid4().hex[:8], 0
    async with app:
        transport = app.transport
        await transport.declare_exchange(names.events, "topic")
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(rate * elapsed) - done
            now = time.time()
            batch = [
                (kind, _event(kind, body.format(id=f"{run}-{done + i}", time=now)))
                for i in range(due)
                for kind, body in templates
            ]
            if batch:
                await transport.emit(names.events, batch)
            done += due
            await asyncio.sleep(0.01)
    return done


def synthetic(dashboard: Dashboard, prefix: str, rate: int, seconds: float) -> dict[str, Any]:
    """Publish events for ``rate`` tasks/s; the dashboard's CPU until it has handled them all
    (so work it does late counts), per second of publishing."""
    pid, counter = dashboard.process.pid, "taskq_dashboard_events_received_total"
    stored_counter = "taskq_dashboard_history_stored_total"
    seen, stored = metric(dashboard.url, counter), metric(dashboard.url, stored_counter)
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    tasks = asyncio.run(publish_events(prefix, rate, seconds))
    published = time.monotonic() - started
    deadline = time.monotonic() + 60
    while (got := metric(dashboard.url, counter) - seen) < tasks * 4:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    late = time.monotonic() - started - published
    while metric(dashboard.url, stored_counter) - stored < tasks * 4:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    stored_late = time.monotonic() - started - published
    rss_kb = int(re.findall(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[0])
    return {"phase": "synthetic events", "tasks_per_s": round(tasks / published),
            "cpu_pct": round(100 * (cpu_seconds(pid) - cpu_before) / published, 1),
            "events_published": tasks * 4, "events_received": int(got),
            "caught_up_after_s": round(late, 1), "stored_after_s": round(stored_late, 1),
            "rss_mb": rss_kb // 1024,
            "connections": connections(prefix)}  # fmt: skip


def measure(dashboard: Dashboard, seconds: float, load: Any = None) -> tuple[float, Any]:
    pid = dashboard.process.pid
    before, started = cpu_seconds(pid), time.monotonic()
    result = load() if load else time.sleep(seconds)
    used, wall = cpu_seconds(pid) - before, time.monotonic() - started
    return 100 * used / wall, result


def real_load(prefix: str, tasks: int, state: Path) -> dict[str, Any]:
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER,
           "PYTHONPATH": str(ROOT), "BENCH_COUNTER_DIR": str(state)}  # fmt: skip
    workers = [subprocess.Popen(
        [sys.executable, "-m", "taskq.cli.worker", APP, "--events", "-c", "64",
         "--name", f"bench-{i}", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) for i in range(2)]  # fmt: skip

    async def send() -> float:
        app = App("dash-sender", broker=BROKER, prefix=prefix, events=True)
        async with app:
            started = time.monotonic()
            for first in range(0, tasks, 500):
                calls = [(app.named("noop").options(ignore_result=True), (i,))
                         for i in range(first, min(tasks, first + 500))]  # fmt: skip
                await app.send_many(calls)
            depth = await app.transport.queue_depth(app.names.work_queue("default"))
            while depth is not None and depth.messages:
                await asyncio.sleep(0.05)
                depth = await app.transport.queue_depth(app.names.work_queue("default"))
            return time.monotonic() - started

    try:
        time.sleep(3)  # let the workers connect (their queue exists before the sends anyway)
        return {"tasks": tasks, "seconds": asyncio.run(send())}
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,2500,5000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--real", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("dashboard-cost.json"))
    args = parser.parse_args()
    prefix, state = f"dashcost{uuid.uuid4().hex[:8]}", Path(f"/tmp/dashcost-{os.getpid()}")
    state.mkdir(parents=True, exist_ok=True)
    dashboard = Dashboard(prefix, state)
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(3)
        conns = connections(prefix)
        idle, _ = measure(dashboard, args.seconds)
        rows.append({"phase": "idle", "tasks_per_s": 0, "cpu_pct": round(idle, 1),
                     "connections": conns})  # fmt: skip
        for rate in (int(r) for r in args.rates.split(",")):
            rows.append(synthetic(dashboard, prefix, rate, args.seconds))
        if args.real:
            cpu, real = measure(dashboard, 0, lambda: real_load(prefix, args.real, state))
            rows.append(
                {
                    "phase": "real workers (2 x --events)",
                    "cpu_pct": round(cpu, 1),
                    "tasks_per_s": round(real["tasks"] / real["seconds"]),
                    "connections": connections(prefix),
                }
            )
    finally:
        dashboard.stop()
        asyncio.run(delete_prefix(prefix, ["default"]))
    for row in rows:
        print(json.dumps(row))
    args.out.write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
