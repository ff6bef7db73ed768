"""Hooks (taskq.hooks) against the real broker: the order they run in, client and worker;
a hook that raises is logged and counted and loses nothing; a before_send refusal; headers
added at send reach the worker's hooks and the task in another process; entry points."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from taskq import (
    App,
    ConfigurationError,
    DeadLettered,
    Hook,
    Reject,
    RetryPolicy,
    Sending,
    SendRefused,
    TaskDone,
    TaskFailed,
    TaskRun,
    Worker,
    current_or_none,
)
from taskq.transport import Delivery
from tests.apps import hookapp
from tests.support import BROKER, WorkerProcess, eventually, queue_length, running_worker

OWN_TASKS = ("ok", "flaky", "rejected")


def make_app(prefix: str) -> App:
    app = App("hooks", broker=BROKER, prefix=prefix)

    @app.task
    async def ok(x: int) -> int:
        return x * 2

    @app.task(retry=RetryPolicy(max_attempts=2, delay=0, jitter=False))
    async def flaky() -> None:
        raise ValueError("always")

    @app.task
    async def rejected() -> None:
        raise Reject("no")

    return app


class Recorder(Hook):
    """Records ``(name, method, task)`` for every call of every method, in one shared list."""

    def __init__(self, name: str, calls: list[tuple[str, str, str]]) -> None:
        self.name, self.calls = name, calls

    def _add(self, method: str, task: str = "", attempt: int | None = None) -> bool:
        """Record a call (not those of the noise tasks of the two-queue variant), under
        ``task#attempt`` when the attempt is known: the hooks of attempt 1 and the run of
        attempt 2 may interleave."""
        if task and task not in OWN_TASKS:
            return False
        self.calls.append((self.name, method, task if attempt is None else f"{task}#{attempt}"))
        return True

    async def before_send(self, send: Sending) -> None:
        self._add("before_send", send.envelope.task_name, send.envelope.attempt)
        send.headers[f"seen-by-{self.name}"] = 1

    async def after_send(self, send: Sending) -> None:
        self._add("after_send", send.envelope.task_name, send.envelope.attempt)

    def on_process_init(self) -> None:
        self._add("on_process_init")

    async def on_worker_start(self, worker: Worker) -> None:
        self._add("on_worker_start")

    async def on_worker_stop(self, worker: Worker) -> None:
        self._add("on_worker_stop")

    def on_received(self, delivery: Delivery) -> None:
        self._add("on_received", delivery.type or "")

    async def before_run(self, run: TaskRun) -> None:
        self._add("before_run", run.envelope.task_name, run.envelope.attempt)

    async def after_run(self, run: TaskRun) -> None:
        self._add("after_run", run.envelope.task_name, run.envelope.attempt)

    async def on_success(self, done: TaskDone) -> None:
        self._add("on_success", done.envelope.task_name, done.envelope.attempt)

    async def on_failure(self, done: TaskDone) -> None:
        self._add("on_failure", done.envelope.task_name, done.envelope.attempt)

    async def on_retry(self, done: TaskDone) -> None:
        self._add("on_retry", done.envelope.task_name, done.envelope.attempt)

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        assert dead.envelope is not None
        self._add("on_dead_letter", dead.envelope.task_name, dead.envelope.attempt)


class Raiser(Recorder):
    """Records each call like Recorder, then raises."""

    def _add(self, method: str, task: str = "", attempt: int | None = None) -> bool:
        if super()._add(method, task, attempt):
            raise RuntimeError(f"hook bug in {method}")
        return False


CLIENT = {"before_send", "after_send"}
RECEIVED = {"on_received"}


def calls_of(
    calls: list[tuple[str, str, str]], task: str, only: set[str] | None = None
) -> list[tuple[str, str]]:
    """The calls for ``task``: of the methods in ``only``, or (None) of the worker's methods
    but ``on_received`` (the client's calls, the arrival of the next delivery and the hooks
    of the previous one may interleave: each side keeps its own order)."""
    return [
        (name, method)
        for name, method, of in calls
        if of == task and (method in only if only else method not in CLIENT | RECEIVED)
    ]


async def test_hooks_run_in_registration_order_and_after_methods_in_reverse(
    prefix: str, topology_cleanup: set[str]
) -> None:
    calls: list[tuple[str, str, str]] = []
    app = make_app(prefix)
    app.add_hook(Recorder("A", calls))
    app.add_hook(Recorder("B", calls))
    async with app:
        async with running_worker(app) as worker:
            assert await (await app.send("ok", 21)).result(timeout=20) == 42
            with pytest.raises(TaskFailed):
                await (await app.send("flaky")).result(timeout=20)
            with pytest.raises(TaskFailed):
                await (await app.send("rejected")).result(timeout=20)

            async def told() -> bool:
                return ("B", "on_dead_letter") in calls_of(calls, "rejected#1")

            await eventually(told, what="the hooks of the rejected task")
        assert worker.hook_errors == 0
    run = [("A", "before_run"), ("B", "before_run"), ("B", "after_run"), ("A", "after_run")]
    dead = [("A", "on_dead_letter"), ("B", "on_dead_letter")]
    assert calls_of(calls, "ok#1") == [*run, ("A", "on_success"), ("B", "on_success")]
    # flaky: attempt 1 is retried, attempt 2 fails (dead-lettered as max-attempts, then failed)
    assert calls_of(calls, "flaky#1") == [*run, ("A", "on_retry"), ("B", "on_retry")]
    assert calls_of(calls, "flaky#2") == [*run, *dead, ("A", "on_failure"), ("B", "on_failure")]
    assert calls_of(calls, "rejected#1") == [*run, *dead]
    client = [("A", "before_send"), ("B", "before_send"), ("B", "after_send"), ("A", "after_send")]
    received = [("A", "on_received"), ("B", "on_received")]
    for task, deliveries in [("ok", 1), ("flaky", 2), ("rejected", 1)]:
        assert calls_of(calls, f"{task}#1", CLIENT) == client
        assert calls_of(calls, task, RECEIVED) == received * deliveries
    lifecycle = [(name, method) for name, method, task in calls if not task]
    assert lifecycle == [("A", "on_process_init"), ("B", "on_process_init"),
                         ("A", "on_worker_start"), ("B", "on_worker_start"),
                         ("B", "on_worker_stop"), ("A", "on_worker_stop")]  # fmt: skip


async def test_a_hook_that_raises_is_logged_counted_and_loses_nothing(
    prefix: str, topology_cleanup: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("prometheus_client")
    from taskq.metrics import WorkerMetrics

    calls: list[tuple[str, str, str]] = []
    app = make_app(prefix)
    app.add_hook(Raiser("bad", calls))
    app.add_hook(Recorder("good", calls))  # still called after the bad one raised
    caplog.set_level(logging.ERROR, logger="taskq.hooks")
    async with app:
        async with running_worker(app) as worker:
            metrics = WorkerMetrics(worker)
            worker.add_hook(metrics)
            assert await (await app.send("ok", 5)).result(timeout=20) == 10
            with pytest.raises(TaskFailed, match="always"):
                await (await app.send("flaky")).result(timeout=20)
            with pytest.raises(TaskFailed, match="no"):
                await (await app.send("rejected")).result(timeout=20)

            async def told() -> bool:
                return ("good", "on_dead_letter") in calls_of(calls, "rejected#1")

            await eventually(told, what="the hooks of the rejected task")
            gauge = metrics.registry.get_sample_value("taskq_hook_errors")
            raised_by_then = sum(1 for call in calls if call[0] == "bad")
        stats = worker.stats()
    raised = [call for call in calls if call[0] == "bad"]
    assert [call[1:] for call in calls if call[0] == "good"] == [call[1:] for call in raised]
    assert {method for _, method, _ in raised} == {
        "before_send", "after_send", "on_process_init", "on_worker_start", "on_worker_stop",
        "on_received", "before_run", "after_run", "on_success", "on_failure", "on_retry",
        "on_dead_letter",
    }  # fmt: skip
    assert stats["hook_errors"] == len(raised)  # every raise counted, client and worker side
    assert gauge == raised_by_then
    logged = [r for r in caplog.records if r.name == "taskq.hooks"]
    assert len(logged) == len(raised)
    assert all("Raiser." in r.getMessage() and r.exc_info for r in logged)
    assert stats["succeeded"] >= 1 and stats["retried"] >= 1 and stats["dead_lettered"] >= 2


async def test_before_send_refusal_publishes_nothing(
    prefix: str, topology_cleanup: set[str]
) -> None:
    class Refuse(Hook):
        async def before_send(self, send: Sending) -> None:
            if send.envelope.args == [13]:
                raise SendRefused("13 is unlucky")

    class AfterSend(Hook):
        def __init__(self) -> None:
            self.sent: list[list[Any]] = []

        async def after_send(self, send: Sending) -> None:
            self.sent.append(send.envelope.args)

    app = make_app(prefix)
    app.add_hook(Refuse())
    app.add_hook(after := AfterSend())
    async with app:
        await app.send("ok", 1)
        with pytest.raises(SendRefused, match="unlucky"):
            await app.send("ok", 13)
        with pytest.raises(SendRefused):
            await app.send_many([("ok", (2,)), ("ok", (13,))])
        assert await queue_length(f"{prefix}.q.default") == 1
    assert after.sent == [[1]]
    assert app.hooks.errors == 0


async def test_a_hook_cannot_set_taskq_headers(prefix: str, topology_cleanup: set[str]) -> None:
    class Sneaky(Hook):
        async def before_send(self, send: Sending) -> None:
            send.headers["x-taskq-attempt"] = 5

    app = make_app(prefix)
    app.add_hook(Sneaky())
    async with app:
        with pytest.raises(ConfigurationError, match="x-taskq-attempt"):
            await app.send("ok", 1)


@pytest.mark.slow
async def test_headers_added_at_send_reach_the_worker_process(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    trace = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    class Propagate(Hook):
        async def before_send(self, send: Sending) -> None:
            assert current_or_none() is None and send.context is None  # not inside a task
            send.headers[hookapp.TRACE] = trace

    log_path = tmp_path / "hooks.jsonl"
    worker = WorkerProcess("tests.apps.hookapp:app", prefix, env={"HOOK_LOG": str(log_path)})
    client = App("client", broker=BROKER, prefix=prefix)
    client.add_hook(Propagate())
    try:
        await worker.wait_ready()
        async with client:
            seen_by_task = await (await client.send("traced")).result(timeout=20)
            attempts = await (await client.send("traced_retry")).result(timeout=20)
    finally:
        worker.kill()
    assert seen_by_task == {hookapp.TRACE: trace}
    assert attempts == 2
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    runs = [line for line in lines if line["method"] == "before_run"]
    assert [(r["task"], r["attempt"]) for r in runs] == [
        ("traced", 1), ("traced_retry", 1), ("traced_retry", 2)
    ]  # fmt: skip
    assert all(r["headers"] == {hookapp.TRACE: trace} and r["current"] for r in runs)
    assert all(line["pid"] == worker.process.pid for line in lines)
    methods = [line["method"] for line in lines]
    assert methods[:2] == ["on_process_init", "on_worker_start"]
    assert methods.count("on_process_init") == 1
    successes = [(line["task"], line["result"]) for line in lines if line["method"] == "on_success"]
    assert successes == [("traced", {hookapp.TRACE: trace}), ("traced_retry", 2)]
    finished = [
        (line["task"], line["exception"]) for line in lines if line["method"] == "after_run"
    ]
    assert finished == [("traced", None), ("traced_retry", "Retry"), ("traced_retry", None)]


def install_entry_point(root: Path, module: str, target: str) -> None:
    """A distribution in ``root`` (put on sys.path by the caller) with one ``taskq.hooks``
    entry point ``rec = {module}:{target}``, and the module itself."""
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[taskq.hooks]\nrec = {module}:{target}\n")
    (root / f"{module}.py").write_text(
        "from taskq import Hook, Sending\n"
        "SENT = []\n"
        "class Rec(Hook):\n"
        "    async def before_send(self, send: Sending) -> None:\n"
        "        SENT.append(send.envelope.task_name)\n"
        "NOT_A_HOOK = object()\n"
    )


async def test_entry_point_hooks_are_loaded_when_the_app_opens(
    prefix: str, topology_cleanup: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"taskq_ep_{uuid.uuid4().hex[:8]}"
    install_entry_point(tmp_path, module, "Rec")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = make_app(prefix)
    assert len(app.hooks) == 0  # declaring loads nothing
    async with app:
        await app.send("ok", 1)
        await app.send("ok", 2)
    assert sys.modules[module].SENT == ["ok", "ok"]
    assert [type(hook).__name__ for hook in app.hooks] == ["Rec"]
    async with app:  # loaded once, not again at the second open
        assert len(app.hooks) == 1


async def test_an_entry_point_that_is_no_hook_is_refused(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"taskq_ep_{uuid.uuid4().hex[:8]}"
    install_entry_point(tmp_path, module, "NOT_A_HOOK")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="not a Hook"):
        await make_app(prefix).open()
