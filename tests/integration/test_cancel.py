"""Cancellation against the real broker: a queued, delayed or running task, before a worker
exists, a worker started or restarted after the cancel, an unknown ID, a cancel racing the
task's end (docs/guide/cancellation.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

import taskq
from taskq import App, Hook, Retry, TaskCancelled, TaskDone, TaskStatus, Worker
from taskq.cancel import Revoker
from taskq.cancel import client as cancel_client
from taskq.topology import revocation_readers_arguments
from taskq.transport import Delivery
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.postgres_support import POSTGRES, drop_tables, table_of
from tests.support import BROKER, delay_level_messages, eventually, queue_length, running_worker

DEADLINE = 30.0


class Ran:
    """What the tasks of one test did, in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, object]] = []

    def add(self, what: str, value: object) -> None:
        self.lines.append((what, value))

    def of(self, what: str) -> list[object]:
        return [value for kind, value in self.lines if kind == what]


def make_app(prefix: str, ran: Ran, **settings: object) -> App:
    app = App("cancel", broker=BROKER, prefix=prefix, **settings)

    @app.task
    async def mark(tag: str) -> str:
        ran.add("mark", tag)
        return tag

    @app.task
    async def wait_long(tag: str) -> str:
        ran.add("started", tag)
        try:
            await asyncio.sleep(DEADLINE * 2)
        except asyncio.CancelledError:
            ran.add("cleanup", tag)
            raise
        finally:
            ran.add("finally", tag)
        return tag

    @app.task
    async def retry_later(tag: str) -> str:
        ran.add("attempt", tag)
        raise Retry(delay=1.5, reason="later")

    @app.task
    def poll_cancel(tag: str) -> str:
        ran.add("started", tag)
        ctx = taskq.current()
        deadline = time.monotonic() + DEADLINE * 2
        while time.monotonic() < deadline:
            if ctx.cancelled:
                ran.add("noticed", tag)
                return "stopped early"
            time.sleep(0.01)
        return tag

    return app


@pytest.fixture
def ran() -> Ran:
    return Ran()


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], ran: Ran) -> App:
    return make_app(prefix, ran)


async def dead_letters(app: App) -> int:
    return await queue_length(app.names.dead_queue("default")) or 0


async def started(worker: Worker, task_id: str) -> None:
    async def running_now() -> bool:
        return task_id in worker.active

    await eventually(running_now, what=f"task {task_id} to start")


async def test_cancel_before_any_worker_exists(app: App, ran: Ran) -> None:
    async with app:
        handle = await app.tasks["mark"].delay("cancelled")
        done = await handle.cancel(reason="changed my mind")
        assert done.status is TaskStatus.CANCELLED and done.cancelled
        with pytest.raises(TaskCancelled, match="changed my mind") as raised:
            await handle.result(timeout=DEADLINE)
        assert raised.value.reason == "changed my mind"
        # A worker started after the cancel takes the message, and never runs it.
        async with running_worker(app) as worker:
            after = await app.tasks["mark"].delay("after")
            assert await after.result(timeout=DEADLINE) == "after"

            async def dropped() -> bool:
                return worker.counters.cancelled == 1

            await eventually(dropped, what="the cancelled message to be taken")
        assert ran.of("mark") == ["after"]
        assert await dead_letters(app) == 0
        assert await handle.status() is TaskStatus.CANCELLED


async def test_cancel_while_queued_behind_a_running_task(app: App, ran: Ran) -> None:
    async with app, running_worker(app, concurrency=1) as worker:
        blocker = await app.tasks["wait_long"].delay("blocker")
        await started(worker, blocker.id)
        queued = await app.tasks["mark"].delay("queued")
        await app.cancel(queued.id, reason="queued")
        with pytest.raises(TaskCancelled):
            await queued.result(timeout=DEADLINE)
        await blocker.cancel(wait=True)
        after = await app.tasks["mark"].delay("after")
        assert await after.result(timeout=DEADLINE) == "after"
        assert ran.of("mark") == ["after"]
        assert worker.counters.cancelled == 2
        assert await dead_letters(app) == 0


async def test_cancel_while_delayed(app: App, ran: Ran) -> None:
    async with app, running_worker(app) as worker:
        # 5 s: the worker holds it until then (taskq.delays), time enough to look there.
        handle = await app.tasks["mark"].options(countdown=5).delay("delayed")

        async def held() -> bool:
            return len(worker.holder) == 1

        await eventually(held, timeout=DEADLINE, what="the worker holding it")
        await handle.cancel(reason="too late")
        assert len(worker.holder) == 1  # still held: decided when it comes due

        async def came_due() -> bool:
            return worker.counters.cancelled == 1

        await eventually(came_due, timeout=DEADLINE, what="the delayed message")
        assert len(worker.holder) == 0
        assert sum(await delay_level_messages(app.names.prefix)) == 0
        with pytest.raises(TaskCancelled, match="too late"):
            await handle.result(timeout=DEADLINE)
        assert ran.of("mark") == []
        assert await dead_letters(app) == 0


async def test_a_worker_restarted_since_the_cancel_does_not_run_it(app: App, ran: Ran) -> None:
    async with app:
        async with running_worker(app):
            handle = await app.tasks["mark"].options(countdown=1.5).delay("delayed")
            await app.cancel(handle.id, reason="restart")
        # While no worker runs (a restart), another cancel.
        between = await app.tasks["mark"].delay("between")
        await app.cancel(between.id, reason="while restarting")
        # The worker that knew of the first cancel is gone; the messages reach a worker
        # that starts afresh (the delayed one once it leaves its delay level).
        async with running_worker(app) as again:

            async def taken() -> bool:
                return again.counters.cancelled == 2

            await eventually(taken, timeout=DEADLINE, what="both messages to be taken")
        assert ran.of("mark") == []
        assert await dead_letters(app) == 0


class Cancels(Hook):
    """Notes each ``on_cancel``: (task ID, reason)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def on_cancel(self, done: TaskDone) -> None:
        assert done.error is not None
        self.seen.append((done.envelope.task_id, done.error.message))


async def test_cancel_while_waiting_for_a_retry(app: App, ran: Ran) -> None:
    async with app, running_worker(app) as worker:
        handle = await app.tasks["retry_later"].delay("retry")

        async def retrying() -> bool:
            return await handle.status() is TaskStatus.RETRYING

        await eventually(retrying, what="the first attempt to fail")
        await handle.cancel(reason="no more attempts")

        async def dropped() -> bool:
            return worker.counters.cancelled == 1

        await eventually(dropped, timeout=DEADLINE, what="the retry to leave its delay level")
        with pytest.raises(TaskCancelled, match="no more attempts"):
            await handle.result(timeout=DEADLINE)
        assert ran.of("attempt") == ["retry"]  # the first attempt only
        assert await dead_letters(app) == 0


async def test_cancel_a_running_async_task_runs_its_cleanup(app: App, ran: Ran) -> None:
    hook = Cancels()
    app.add_hook(hook)
    async with app, running_worker(app) as worker:
        handle = await app.tasks["wait_long"].delay("running")
        await started(worker, handle.id)
        done = await handle.cancel(reason="stop", wait=True, timeout=DEADLINE)
        assert done.stopped and done.stopped_on == (worker.name,)
        assert ran.of("cleanup") == ["running"] and ran.of("finally") == ["running"]
        assert hook.seen == [(handle.id, "stop")]  # told once the state is recorded
        assert handle.id not in worker.active
        with pytest.raises(TaskCancelled, match="stop"):
            await handle.result(timeout=DEADLINE)
        # The worker runs on: the cancel stopped the task, not the runner.
        after = await app.tasks["mark"].delay("next")
        assert await after.result(timeout=DEADLINE) == "next"
        assert await dead_letters(app) == 0


async def test_cancel_a_running_thread_task_through_its_check(app: App, ran: Ran) -> None:
    async with app, running_worker(app) as worker:
        handle = await app.tasks["poll_cancel"].delay("thread")
        await started(worker, handle.id)
        done = await app.cancel(handle.id, reason="cooperate", wait=True, timeout=DEADLINE)
        assert done.stopped_on == (worker.name,) and done.stopped
        assert ran.of("noticed") == ["thread"]
        # It returned early; the cancel still decides what it was.
        with pytest.raises(TaskCancelled, match="cooperate"):
            await handle.result(timeout=DEADLINE)


async def test_cancel_of_an_unknown_id(app: App) -> None:
    async with app, running_worker(app):
        unknown = str(uuid.uuid4())
        done = await app.cancel(unknown, wait=True, timeout=DEADLINE)
        # The AMQP store knows only what this process sent: it cannot tell the status.
        assert done.status is None and done.stopped_on == () and done.stopped
        # The revocation is in force anyway: a task sent later with that ID never runs.
        late = await app.tasks["mark"].options(task_id=unknown).delay("late")
        with pytest.raises(TaskCancelled):
            await late.result(timeout=DEADLINE)


async def test_the_sync_client_cancels(app: App, ran: Ran) -> None:
    def in_a_thread() -> tuple[TaskStatus | None, str]:
        with app.sync as client:
            handle = client.send(app.tasks["mark"].options(countdown=60), "sync")
            done = handle.cancel(reason="from sync code")
            try:
                handle.result(timeout=DEADLINE)
            except TaskCancelled as exc:
                return done.status, exc.reason
            return done.status, "ran"

    status, reason = await asyncio.to_thread(in_a_thread)
    assert status is TaskStatus.CANCELLED and reason == "from sync code"
    assert ran.of("mark") == []


@pytest.fixture(params=["redis", "postgres"])
async def durable_app(
    request: pytest.FixtureRequest, prefix: str, topology_cleanup: set[str], ran: Ran
) -> AsyncIterator[App]:
    """An App whose results go to a durable store (Redis, PostgreSQL), cleaned up after."""
    if request.param == "redis":
        yield make_app(prefix, ran, results=REDIS)
        await delete_redis_keys(prefix)
    else:
        yield make_app(prefix, ran, results=POSTGRES)
        await drop_tables(table_of(prefix))


async def test_a_cancel_racing_the_end_leaves_exactly_one_terminal_state(
    durable_app: App, ran: Ran
) -> None:
    app = durable_app
    async with app, running_worker(app):
        handles = [await app.tasks["mark"].delay(f"race{i}") for i in range(20)]
        # Cancel each as it may be running or just done: from another "process" (by ID).
        results = await asyncio.gather(*(app.cancel(h.id, reason="race") for h in handles))
        for i, (handle, done) in enumerate(zip(handles, results, strict=True)):
            first = await handle.info()
            assert first.status in (TaskStatus.SUCCESS, TaskStatus.CANCELLED)
            assert done.status is first.status  # what the cancel saw is what won
            if first.status is TaskStatus.CANCELLED:
                with pytest.raises(TaskCancelled):
                    await handle.result(timeout=DEADLINE)
            else:
                assert await handle.result(timeout=DEADLINE) == f"race{i}"
            again = await app.handle(handle.id, "mark").info()
            assert again.status is first.status  # the loser's late write changed nothing
        # A task that has already finished keeps its state.
        finished = await app.tasks["mark"].delay("finished")
        await finished.result(timeout=DEADLINE)
        done = await finished.cancel(reason="too late")
        assert done.status is TaskStatus.SUCCESS and not done.cancelled


async def test_a_durable_store_records_the_cancel_of_a_task_sent_elsewhere(
    durable_app: App, ran: Ran
) -> None:
    app = durable_app
    async with app:
        handle = await app.tasks["mark"].options(countdown=60).delay("elsewhere")
        done = await app.cancel(handle.id, reason="by ID")
        assert done.status is TaskStatus.CANCELLED
        state = await app.handle(handle.id).info()
        assert state.status is TaskStatus.CANCELLED and state.error is not None
        assert state.error.message == "by ID"


async def test_a_cancel_returns_once_every_worker_reading_cancels_knows_it(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Both workers apply each revocation 0.3 s after the stream delivers it: a cancel that
    # returned at once could meet a worker that would still start the task.
    applied: list[str | None] = []
    original = Revoker._on_delivery

    def late(self: Revoker, delivery: Delivery) -> None:
        def apply() -> None:
            original(self, delivery)
            applied.append(delivery.message_id)

        asyncio.get_running_loop().call_later(0.3, apply)

    monkeypatch.setattr(Revoker, "_on_delivery", late)
    async with app, running_worker(app), running_worker(app):
        done = await app.cancel(str(uuid.uuid4()), reason="known everywhere")
        assert done.reached and applied == [done.task_id, done.task_id]
        # A reader that never answers (a worker whose loop is stuck): the cancel gives up
        # after REACH_WAIT seconds and says so.
        monkeypatch.setattr(cancel_client, "REACH_WAIT", 1.0)
        stuck = App("stuck", broker=BROKER, prefix=app.names.prefix)
        async with stuck:
            await stuck.transport.hold(app.names.revocation_readers, revocation_readers_arguments())
            unheard = await app.cancel(str(uuid.uuid4()), reason="one is stuck")
        assert not unheard.reached and applied.count(unheard.task_id) == 2
        assert "2 of 3 workers acknowledged it" in caplog.text
