"""The in-process mode (``memory://``): the real sender, worker and result store with no
broker. Each test gets its own event loop, hence its own in-memory broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from examples.custom_store.memory_store import MemoryStore
from taskq import (
    App,
    ConfigurationError,
    Hook,
    InvalidArguments,
    Reject,
    RetryPolicy,
    Sending,
    TaskFailed,
    TaskStatus,
    Worker,
    current,
)
from taskq.hooks import DeadLettered, TaskDone, TaskRun
from taskq.memory import parse_memory_url
from taskq.memory.seam import transport_for
from taskq.memory.transport import MemoryTransport
from taskq.testing.memory import broker_of, dead_letters
from taskq.testing.worker import running
from taskq.transport import SharedMethods, Transport
from tests.support import REPO
from tests.test_docs_samples import extract, run_sample


class Order(BaseModel):
    id: str
    total: float


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every attempt to open a network connection is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"no network in this test (tried {address!r})")

    async def refuse_loop(self: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> Any:
        attempts.append((args, kwargs))
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse_loop)
    yield attempts


# -- the README's tour, unchanged --------------------------------------------------------------


def readme_tour() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    tour = text[text.index("## A short tour") :]
    return next(iter(extract(tour, "README.md#tour"))).code


def test_the_readme_tour_runs_unchanged_in_memory(
    monkeypatch: pytest.MonkeyPatch, no_network: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = readme_tour()
    assert 'App("shop")' in code  # the broker comes from TASKQ_BROKER: the code is untouched
    monkeypatch.setenv("TASKQ_BROKER", "memory://")
    run_sample(code, "README.md#tour")
    printed = capsys.readouterr().out.splitlines()
    assert printed[:2] == ["cat.small.png", "ValueError nothing to charge"]
    assert no_network == []


def test_the_tour_does_need_a_broker_without_memory(
    monkeypatch: pytest.MonkeyPatch, no_network: list[Any]
) -> None:
    """The no-network guard works: the same code on an AMQP URL tries to connect."""
    monkeypatch.setenv("TASKQ_BROKER", "amqp://guest:guest@127.0.0.1:5672/")
    monkeypatch.setenv("TASKQ_CONNECT_TIMEOUT", "1")
    with pytest.raises(Exception):  # noqa: B017 (BrokerUnavailable, whatever wraps it)
        run_sample(readme_tour(), "README.md#tour")
    assert no_network


# -- the URL and the seam ----------------------------------------------------------------------


def test_memory_urls_are_parsed_and_bad_ones_refused() -> None:
    url = parse_memory_url("memory://other?worker=false&instant_delays=1")
    assert (url.name, url.worker, url.instant_delays) == ("other", False, True)
    for bad in ("memory://?instant_delay=1", "memory://?worker=maybe", "memory://a/b"):
        with pytest.raises(ConfigurationError):
            App("bad", broker=bad)


def test_the_seam_picks_the_transport_by_url() -> None:
    memory = transport_for(App("m", broker="memory://").settings, "t")
    amqp = transport_for(App("a", broker="amqp://127.0.0.1/").settings, "t")
    assert isinstance(memory, MemoryTransport)
    assert type(amqp).__name__ == "NativeTransport"  # the default implementation


def test_the_memory_transport_overrides_every_public_method() -> None:
    # Each of them its own, or one every transport shares; never the Protocol's empty body.
    public = {n for n in vars(Transport) if not n.startswith("_")}
    defined = set(vars(MemoryTransport)) | set(vars(SharedMethods))
    assert public <= defined, public - defined


# -- what a task does in memory ----------------------------------------------------------------


def shop(broker: str = "memory://", **settings: Any) -> App:
    app = App("shop", broker=broker, **settings)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def when(order: Order) -> dt.datetime:
        return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    @app.task
    async def echo(order: Order) -> Order:
        return order.model_copy(update={"total": order.total * 2})

    @app.task(timeout=0.05)
    async def hang() -> None:
        await asyncio.sleep(60)

    @app.task
    async def refuse(why: str) -> None:
        raise Reject(why)

    @app.task
    async def steps() -> str:
        await current().progress(0.5, "half way")
        await asyncio.sleep(60)
        return "done"

    return app


async def test_results_come_back_validated_to_their_types() -> None:
    app = shop()
    async with app:
        assert await (await app.tasks["add"].delay(2, "3")).result(timeout=5) == 5
        when = await (await app.tasks["when"].delay(Order(id="o", total=1))).result(timeout=5)
        assert when == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        echoed = await (await app.tasks["echo"].delay({"id": "o", "total": 2})).result(timeout=5)
        assert echoed == Order(id="o", total=4.0)
        handle = await app.tasks["add"].delay(1, 1)
        await handle.result(timeout=5)
        assert await handle.status() is TaskStatus.SUCCESS
        info = await handle.info()
        assert (info.attempt, info.worker is not None) == (1, True)


async def test_a_bad_call_fails_at_send_and_bad_arguments_at_the_worker() -> None:
    app = shop()
    async with app:
        with pytest.raises(InvalidArguments):
            await app.tasks["add"].delay(1)  # type: ignore[call-arg]
        # A send by name is not checked at send: the worker validates with pydantic.
        handle = await app.send("add", 1, "not a number")
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=5)
    assert failed.value.remote_type == "taskq.exceptions.InvalidArguments"
    assert "validation error" in failed.value.remote_message
    [dead] = dead_letters(app)
    assert dead.reason == "invalid-args"


class Delays(Hook):
    def __init__(self) -> None:
        self.delays: list[float | None] = []

    async def on_retry(self, done: TaskDone) -> None:
        self.delays.append(done.delay)


async def test_retries_wait_their_backoff_on_the_loop_clock() -> None:
    app = App("retries", broker="memory://")
    retries = Delays()
    app.add_hook(retries)
    attempts: list[float] = []
    policy = RetryPolicy(max_attempts=3, delay=0.2, backoff=2.0, jitter=False,
                         retry_on=(ConnectionError,))  # fmt: skip

    @app.task(retry=policy)
    async def flaky() -> int:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise ConnectionError("hung up")
        return current().attempt

    async with app:
        handle = await flaky.delay()
        assert await handle.result(timeout=10) == 3
    assert retries.delays == [0.2, 0.4]
    # Each retry waited its delay on the loop's clock (call_later may run a callback up to
    # the clock's resolution early): a lower bound, not a speed.
    first, second = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first >= 0.2 - 0.01 and second >= 0.4 - 0.01


async def test_instant_delays_skip_the_backoff_and_the_countdown() -> None:
    app = App("instant", broker="memory://?instant_delays=true")

    @app.task(retry=RetryPolicy(max_attempts=2, delay=3600, retry_on=(ConnectionError,)))
    async def flaky() -> int:
        if current().attempt == 1:
            raise ConnectionError("hung up")
        return current().attempt

    async with app:
        handle = await flaky.options(countdown=3600).delay()
        assert await handle.result(timeout=5) == 2  # an hour twice, in no time


async def test_a_countdown_waits_in_the_broker() -> None:
    app = shop()
    async with app:
        handle = await app.tasks["add"].options(countdown=30).delay(1, 2)
        assert broker_of(app).delayed == 1
        assert await handle.status() is TaskStatus.PENDING


async def test_a_timeout_fails_the_task_with_task_timeout() -> None:
    app = shop()
    async with app:
        with pytest.raises(TaskFailed) as failed:
            await (await app.tasks["hang"].delay()).result(timeout=5)
    assert failed.value.remote_type.endswith("TaskTimeout")
    assert [d.reason for d in dead_letters(app)] == ["max-attempts"]


async def test_a_failure_carries_type_message_traceback_and_is_dead_lettered() -> None:
    app = App("fails", broker="memory://")

    @app.task(queue="billing")
    async def charge(total: float) -> None:
        raise ValueError(f"cannot charge {total}")

    @app.task
    async def refuse() -> None:
        raise Reject("not for us")

    async with app:
        with pytest.raises(TaskFailed) as failed:
            await (await charge.delay(0)).result(timeout=5)
        with pytest.raises(TaskFailed):
            await (await refuse.delay()).result(timeout=5)
    remote = failed.value
    assert (remote.remote_type, remote.remote_message) == ("ValueError", "cannot charge 0.0")
    assert "raise ValueError" in remote.remote_traceback
    [dead] = dead_letters(app, "billing")
    assert (dead.reason, dead.error_type, dead.task_name) == (
        "max-attempts",
        "ValueError",
        "charge",
    )
    assert "raise ValueError" in dead.traceback
    assert [d.reason for d in dead_letters(app)] == ["rejected"]


async def test_progress_is_visible_through_the_handle() -> None:
    app = shop(shutdown_timeout=0.1)  # the worker gives up on the task when the App closes
    async with app:
        handle = await app.tasks["steps"].delay()
        for _ in range(500):
            info = await handle.info()
            if info.progress is not None:
                break
            await asyncio.sleep(0.01)
        assert (info.status, info.progress, info.progress_message) == (
            TaskStatus.STARTED, 0.5, "half way",
        )  # fmt: skip
    # Closing stopped the in-process worker: the unfinished task went back to its queue.
    assert len(broker_of(app).queues[app.names.work_queue("default")]) == 1


class Recorder(Hook):
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def before_send(self, send: Sending) -> None:
        self.seen.append("before_send")
        send.headers["trace"] = "t-1"

    async def after_send(self, send: Sending) -> None:
        self.seen.append("after_send")

    async def before_run(self, run: TaskRun) -> None:
        self.seen.append(f"before_run:{run.headers.get('trace')}")

    async def after_run(self, run: TaskRun) -> None:
        self.seen.append(f"after_run:{type(run.exception).__name__}")

    async def on_success(self, done: TaskDone) -> None:
        self.seen.append("on_success")

    async def on_retry(self, done: TaskDone) -> None:
        self.seen.append("on_retry")

    async def on_failure(self, done: TaskDone) -> None:
        self.seen.append("on_failure")

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        self.seen.append(f"on_dead_letter:{dead.reason}")


async def test_hooks_run_in_order_around_sends_and_runs() -> None:
    app = App("hooked", broker="memory://?instant_delays=1")
    hook = Recorder()
    app.add_hook(hook)

    @app.task(retry=RetryPolicy(max_attempts=2, delay=1, retry_on=(ConnectionError,)))
    async def flaky() -> None:
        raise ConnectionError("down")

    async with app:
        with pytest.raises(TaskFailed):
            await (await flaky.delay()).result(timeout=5)
    assert hook.seen == [
        "before_send", "after_send",
        "before_run:t-1", "after_run:ConnectionError", "on_retry",
        "before_run:t-1", "after_run:ConnectionError", "on_dead_letter:max-attempts", "on_failure",
    ]  # fmt: skip


async def test_an_explicit_worker_with_worker_false() -> None:
    app = shop("memory://?worker=false")
    async with app:
        handle = await app.tasks["add"].delay(2, 2)
        await asyncio.sleep(0)
        assert await handle.status() is TaskStatus.PENDING  # nobody runs it yet
        async with running(Worker(app, concurrency=2)) as worker:
            assert await handle.result(timeout=5) == 4
        assert worker.counters.succeeded == 1


async def test_a_durable_memory_store_looks_tasks_up_by_id() -> None:
    app = shop(results=MemoryStore())  # the example custom store, as an object
    async with app:
        sent = await app.tasks["add"].delay(20, 22)
        await sent.result(timeout=5)
        assert await app.handle(sent.id, "add").result(timeout=1) == 42


async def test_brokers_of_other_names_share_nothing() -> None:
    first, second = shop("memory://a?worker=false"), shop("memory://b?worker=false")
    async with first, second:
        await first.tasks["add"].delay(1, 1)
        assert broker_of(first) is not broker_of(second)
        queue = first.names.work_queue("default")
        depth = await first.transport.queue_depth(queue)
        assert depth is not None and depth.messages == 1
        assert await second.transport.queue_depth(queue) is None  # never declared there
