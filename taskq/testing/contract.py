"""The result-store contract: what every ResultStore must do, as checks you can run.

taskq runs these checks against its own stores (AMQP where they apply, Redis, PostgreSQL) and
against an in-memory store written as a user would; run them against yours::

    import pytest
    from taskq.testing.contract import Contract, checks

    def make_store(*, result_ttl: float | None) -> MyStore:
        return MyStore(DSN, namespace=NAMESPACE, result_ttl=result_ttl)

    @pytest.mark.parametrize("check", checks(), ids=str)
    async def test_my_store(check):
        await check(Contract(make_store, broker="amqp://guest:guest@127.0.0.1:5672/"))

``make_store`` returns a new, unopened store each call, and every store it returns must see
the same states (as stores in different processes over one database do): the checks use
one instance to write and another to read or wait. It may also return a string, which is
given to ``App(results=...)`` (e.g. ``"amqp"``); the store-level checks then do not apply.

Checks of level ``"store"`` call the store directly. Checks of level ``"app"`` run a real
Worker against RabbitMQ at ``broker``, with two Apps (a sender and a worker) that each have a
store from ``make_store``; they declare queues and exchanges under ``Contract.prefix`` and
delete them afterwards. Checks marked ``durable`` apply to stores whose ``durable`` is True
(lookups by ID from any process). The checks use short deadlines and poll, never sleep for
a fixed time; each raises AssertionError (or the store's own exception) when the store
breaks the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import decimal
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, Protocol

import pydantic

from ..app import App
from ..context import current
from ..exceptions import EncodeError, ResultTimeout, ResultUnavailable, TaskFailed
from ..results.base import ErrorInfo, ResultStore, TaskState, TaskStatus
from ..worker import Worker
from .isolation import delete_topology
from .polling import eventually
from .worker import running as running_worker


class StoreFactory(Protocol):
    """Makes a new, unopened store over the shared storage (or a ``results`` string)."""

    def __call__(self, *, result_ttl: float | None) -> ResultStore | str: ...


@dataclasses.dataclass(frozen=True)
class Contract:
    """What the checks run against: a store factory, the broker, a prefix of its own."""

    make_store: StoreFactory
    broker: str = "amqp://guest:guest@127.0.0.1:5672/"
    prefix: str = dataclasses.field(default_factory=lambda: f"tqc{uuid.uuid4().hex[:12]}")
    result_ttl: float | None = 3600.0
    """The TTL of the stores the checks make (the TTL check makes one with 1 s)."""


CheckRun = Callable[[Contract], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Check:
    """One check of the contract; call it with a Contract."""

    name: str
    run: CheckRun
    level: Literal["store", "app"]
    durable: bool

    def __str__(self) -> str:
        return self.name

    async def __call__(self, contract: Contract) -> None:
        await self.run(contract)


_CHECKS: list[Check] = []


def _check(level: Literal["store", "app"], *, durable: bool) -> Callable[[CheckRun], CheckRun]:
    def register(run: CheckRun) -> CheckRun:
        _CHECKS.append(Check(run.__name__, run, level, durable))
        return run

    return register


def checks(*, durable: bool = True, levels: tuple[str, ...] = ("store", "app")) -> list[Check]:
    """The checks for a store: all of them for a durable one, else those that apply."""
    return [c for c in _CHECKS if c.level in levels and (durable or not c.durable)]


@contextlib.asynccontextmanager
async def opened(contract: Contract, result_ttl: float | None = None) -> AsyncIterator[ResultStore]:
    """A new store from the contract's factory, open for the block."""
    store = contract.make_store(result_ttl=result_ttl or contract.result_ttl)
    if isinstance(store, str):
        raise TypeError("the store-level checks need a store object, not a results string")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _state(task_id: str, status: TaskStatus, attempt: int = 1, **fields: Any) -> TaskState:
    return TaskState(task_id, status, "contract.task", attempt, worker="w1", **fields)


def _id() -> str:
    return f"contract-{uuid.uuid4()}"


# -- the store level ---------------------------------------------------------------------------

RICH = {
    "when": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
    "amount": decimal.Decimal("12.50"),
    "raw": b"\x00\xff",
    "id": uuid.UUID(int=7),
    "items": [1, 2.5, "three", None, True],
}


@_check("store", durable=True)
async def typed_states_round_trip(contract: Contract) -> None:
    """What one instance records, another reads back: status, attempt, worker, progress,
    typed results (datetime, Decimal, bytes, UUID) and errors with their tracebacks."""
    done, failed = _id(), _id()
    async with opened(contract) as writer, opened(contract) as reader:
        await writer.record(_state(done, TaskStatus.STARTED, progress=0.25,
                                   progress_message="a quarter"), reply_to=None)  # fmt: skip
        started = await reader.get(done)
        assert started is not None, "a recorded state is not visible to another instance"
        assert (started.status, started.attempt, started.worker) == (TaskStatus.STARTED, 1, "w1"), (
            started
        )
        assert (started.progress, started.progress_message) == (0.25, "a quarter"), started
        await writer.record(_state(done, TaskStatus.SUCCESS, result=RICH), reply_to=None)
        success = await reader.get(done)
        assert success is not None and success.status is TaskStatus.SUCCESS, success
        assert success.result == RICH, f"result came back as {success.result!r}"
        assert success.task_name == "contract.task", success
        error = ErrorInfo("ValueError", "kaput", 'Traceback...\n  raise ValueError("kaput")')
        await writer.record(_state(failed, TaskStatus.FAILURE, error=error), reply_to=None)
        failure = await reader.get(failed)
        assert failure is not None and failure.error == error, failure
        assert await reader.get(_id()) is None, "an unknown task must be None"


@_check("store", durable=True)
async def a_status_never_moves_backwards(contract: Contract) -> None:
    """Updates in any order, at once: the terminal state wins and stays; a later attempt
    wins over an earlier one; a late STARTED after the outcome is ignored."""
    task_id = _id()
    async with opened(contract) as store:
        updates = [
            _state(task_id, status, attempt)
            for attempt in (1, 2, 3)
            for status in (TaskStatus.PENDING, TaskStatus.STARTED, TaskStatus.RETRYING)
        ]
        updates.append(_state(task_id, TaskStatus.SUCCESS, 2, result={"n": 1}))
        random.shuffle(updates)
        await asyncio.gather(*(store.record(u, reply_to=None) for u in updates))
        await store.record(_state(task_id, TaskStatus.STARTED, 9), reply_to=None)
        await store.record(_state(task_id, TaskStatus.FAILURE, 9), reply_to=None)
        state = await store.get(task_id)
        assert state is not None
        assert (state.status, state.attempt, state.result) == (TaskStatus.SUCCESS, 2, {"n": 1})
        retrying = _id()
        await store.record(_state(retrying, TaskStatus.RETRYING, 1), reply_to=None)
        await store.record(_state(retrying, TaskStatus.STARTED, 1), reply_to=None)
        await store.record(_state(retrying, TaskStatus.STARTED, 2), reply_to=None)
        state = await store.get(retrying)
        assert state is not None and (state.status, state.attempt) == (TaskStatus.STARTED, 2)


@_check("store", durable=True)
async def waiting_needs_no_writer_in_the_same_process(contract: Contract) -> None:
    """A waiter on one instance gets the outcome another instance records: for a task not
    yet known, one still running, and one already finished."""
    unknown, running = _id(), _id()
    async with opened(contract) as waiter, opened(contract) as writer:
        await writer.record(_state(running, TaskStatus.STARTED), reply_to=None)
        waits = [asyncio.ensure_future(waiter.wait(t, 30)) for t in (unknown, running)]
        await asyncio.sleep(0)  # let both start waiting before the outcomes exist
        for task_id in (unknown, running):
            await writer.record(_state(task_id, TaskStatus.SUCCESS, result=task_id),
                                reply_to=None)  # fmt: skip
        states = await asyncio.gather(*waits)
        assert [s.result for s in states] == [unknown, running]
        finished = await waiter.wait(running, 5)
        assert finished.status is TaskStatus.SUCCESS


@_check("store", durable=True)
async def many_waiters_on_one_store(contract: Contract) -> None:
    """300 callers wait on one instance while another records their outcomes (some before
    the callers start, most after): each gets its own."""
    ids = [_id() for _ in range(300)]
    async with opened(contract) as waiter, opened(contract) as writer:
        for task_id in ids[:30]:
            await writer.record(_state(task_id, TaskStatus.SUCCESS, result=task_id),
                                reply_to=None)  # fmt: skip
        waits = [asyncio.ensure_future(waiter.wait(t, 60)) for t in ids]
        await asyncio.gather(*(
            writer.record(_state(t, TaskStatus.SUCCESS, result=t), reply_to=None)
            for t in ids[30:]
        ))  # fmt: skip
        states = await asyncio.gather(*waits)
        assert [s.result for s in states] == ids


@_check("store", durable=False)
async def a_wait_ends_at_its_deadline(contract: Contract) -> None:
    """No outcome: ResultTimeout (a TimeoutError) that names the task, soon after the
    deadline; the store answers normally afterwards."""
    task_id = _id()
    async with opened(contract) as store:
        store.track(task_id, "contract.task")
        started = time.monotonic()
        try:
            await store.wait(task_id, 0.3)
        except ResultTimeout as exc:
            assert isinstance(exc, TimeoutError)
            assert task_id in str(exc), str(exc)
        else:
            raise AssertionError("wait returned without an outcome")
        assert time.monotonic() - started < 20, "the wait overran its deadline by far"
        await store.record(_state(task_id, TaskStatus.SUCCESS, result=1), reply_to=None)
        assert (await store.wait(task_id, 10)).result == 1


@_check("store", durable=True)
async def sending_an_id_again_never_resets_it(contract: Contract) -> None:
    """``track`` makes an unknown task PENDING (seen by other instances) and leaves a
    recorded state as it is: a task ID is sent once."""
    task_id = _id()
    async with opened(contract) as sender, opened(contract) as other:
        sender.track(task_id, "contract.task")

        async def pending() -> TaskState | None:
            return await other.get(task_id)

        state = await eventually(pending, what="the PENDING state of a sent task")
        assert state is not None, "eventually returned no state"
        assert (state.status, state.task_name) == (TaskStatus.PENDING, "contract.task"), state
        await other.record(_state(task_id, TaskStatus.SUCCESS, result="first"), reply_to=None)
        sender.track(task_id, "contract.task")  # sent again with the same ID
        assert (await sender.wait(task_id, 10)).result == "first"

        async def settled() -> bool:  # give a background write time to do harm, if it would
            state = await other.get(task_id)
            return state is not None and state.status is TaskStatus.SUCCESS

        for _ in range(10):
            assert await settled(), "sending the ID again reset its state"
            await asyncio.sleep(0.02)


@_check("store", durable=True)
async def reset_lets_a_replay_record_afresh(contract: Contract) -> None:
    """After ``reset`` (a DLQ replay), the task's states are recorded again from scratch."""
    task_id = _id()
    async with opened(contract) as store:
        await store.record(_state(task_id, TaskStatus.FAILURE, 3), reply_to=None)
        await store.reset(task_id)
        after = await store.get(task_id)
        assert after is None or not after.status.terminal, after
        await store.record(_state(task_id, TaskStatus.STARTED, 1), reply_to=None)
        await store.record(_state(task_id, TaskStatus.SUCCESS, 1, result="again"), reply_to=None)
        assert (await store.wait(task_id, 10)).result == "again"


@_check("store", durable=True)
async def states_expire_after_result_ttl(contract: Contract) -> None:
    """A store made with ``result_ttl=1`` forgets a state about a second after its last
    write: the task is unknown again."""
    task_id = _id()
    async with opened(contract, result_ttl=1.0) as store:
        await store.record(_state(task_id, TaskStatus.SUCCESS, result=1), reply_to=None)
        assert await store.get(task_id) is not None

        async def gone() -> bool:
            return await store.get(task_id) is None

        await eventually(gone, what="the state to expire")
        await store.record(_state(task_id, TaskStatus.STARTED, 1), reply_to=None)
        again = await store.get(task_id)
        assert again is not None and again.status is TaskStatus.STARTED, again


@_check("store", durable=True)
async def an_unencodable_result_is_refused_before_writing(contract: Contract) -> None:
    """``record`` raises EncodeError for a result msgpack cannot carry, and keeps the state
    it had (the worker then records a failure instead)."""
    task_id = _id()
    async with opened(contract) as store:
        await store.record(_state(task_id, TaskStatus.STARTED), reply_to=None)
        try:
            await store.record(_state(task_id, TaskStatus.SUCCESS, result=object()),
                               reply_to=None)  # fmt: skip
        except EncodeError:
            pass
        else:
            raise AssertionError("an unencodable result was accepted")
        state = await store.get(task_id)
        assert state is not None and state.status is TaskStatus.STARTED, state


@_check("store", durable=False)
async def closing_the_store_ends_its_waits(contract: Contract) -> None:
    """A caller waiting when its store closes gets ResultUnavailable, not a hang."""
    task_id = _id()
    store = contract.make_store(result_ttl=contract.result_ttl)
    assert not isinstance(store, str)
    await store.open()
    try:
        store.track(task_id, "contract.task")
        waiting = asyncio.ensure_future(store.wait(task_id, 60))
        await asyncio.sleep(0.05)
    finally:
        await store.close()
    try:
        async with asyncio.timeout(15):
            await waiting
    except ResultUnavailable:
        return
    raise AssertionError("a wait on a closed store did not end with ResultUnavailable")


# -- the App level: a real worker ------------------------------------------------------------


class Point(pydantic.BaseModel):
    """A pydantic model as a task's argument and result."""

    x: int
    y: int


@dataclasses.dataclass
class Pair:
    """A sending App and a worker App, each with its own store from the factory."""

    client: App
    served: App
    gate: asyncio.Event
    calls: list[str]
    worker: Worker | None = None

    async def handled(self, deliveries: int) -> None:
        """Wait until the worker received ``deliveries`` and runs nothing."""
        worker = self.worker
        assert worker is not None

        async def idle() -> bool:
            return worker.counters.received >= deliveries and not worker.active

        await eventually(idle, what=f"{deliveries} deliveries handled")


def _app(contract: Contract, name: str, gate: asyncio.Event, calls: list[str]) -> App:
    app = App(name, broker=contract.broker, prefix=contract.prefix,
              results=contract.make_store(result_ttl=contract.result_ttl))  # fmt: skip

    @app.task
    async def add(x: int, y: int) -> int:
        calls.append(f"add({x}, {y})")
        return x + y

    @app.task
    def boom(message: str) -> None:
        raise ValueError(message)

    @app.task
    async def mirror(p: Point) -> Point:
        return Point(x=p.y, y=p.x)

    @app.task
    async def reports_early() -> str:
        await current().progress(0.25, "early")
        await asyncio.sleep(0.3)  # the task's own work, past the worker's deferred STARTED
        calls.append("reported early")
        await gate.wait()
        return "done"

    @app.task
    async def gated(report: bool) -> str:
        if report:
            await current().progress(0.5, "half way")
        await gate.wait()
        return "done"

    @app.task
    async def flaky() -> int:
        if current().attempt == 1:
            from ..exceptions import Retry

            raise Retry(delay=0, reason="first try fails")
        await gate.wait()
        return current().attempt

    return app


@contextlib.asynccontextmanager
async def running(contract: Contract) -> AsyncIterator[Pair]:
    """Both Apps open and a worker running for the block; their topology deleted after."""
    gate, calls = asyncio.Event(), list[str]()
    pair = Pair(_app(contract, "contract-client", gate, calls),
                _app(contract, "contract-worker", gate, calls), gate, calls)  # fmt: skip
    try:
        async with pair.client, pair.served:
            pair.worker = Worker(pair.served, concurrency=4)
            async with running_worker(pair.worker, ready_timeout=30):
                try:
                    yield pair
                finally:
                    gate.set()
    finally:
        settings = pair.served.settings
        await delete_topology(settings, [settings.default_queue])


@_check("app", durable=False)
async def send_and_typed_result(contract: Contract) -> None:
    """A task's result comes back typed (an int, a pydantic model), and its state says
    SUCCESS, attempt 1, and which worker ran it."""
    async with running(contract) as pair:
        handle = await pair.client.tasks["add"].delay(4, 6)
        assert await handle.result(timeout=20) == 10
        info = await handle.info()
        assert (info.status, info.attempt) == (TaskStatus.SUCCESS, 1), info
        assert info.worker, info
        model = await (await pair.client.tasks["mirror"].delay(Point(x=1, y=2))).result(20)
        assert model == Point(x=2, y=1) and isinstance(model, Point), model


@_check("app", durable=False)
async def a_failure_comes_back_with_its_traceback(contract: Contract) -> None:
    """A task that raises: TaskFailed with the remote type, message and traceback; the
    state says FAILURE with the same error."""
    async with running(contract) as pair:
        handle = await pair.client.tasks["boom"].delay("kaput")
        try:
            await handle.result(timeout=20)
        except TaskFailed as failed:
            assert (failed.remote_type, failed.remote_message) == ("ValueError", "kaput")
            assert "raise ValueError(message)" in failed.remote_traceback
        else:
            raise AssertionError("a failing task gave a result")
        info = await handle.info()
        assert info.status is TaskStatus.FAILURE, info
        assert info.error is not None and info.error.type == "ValueError", info


@_check("app", durable=False)
async def statuses_progress_and_retries_are_visible(contract: Contract) -> None:
    """PENDING or STARTED, then STARTED with its progress while running, then SUCCESS; a
    retried task shows attempt 2 and finishes with it."""
    async with running(contract) as pair:
        handle = await pair.client.tasks["gated"].delay(True)
        assert await handle.status() in (TaskStatus.PENDING, TaskStatus.STARTED)

        async def progressed() -> bool:
            info = await handle.info()
            return (info.status, info.progress, info.progress_message) == (
                TaskStatus.STARTED,
                0.5,
                "half way",
            )

        await eventually(progressed, what="STARTED with progress 0.5")
        flaky = await pair.client.tasks["flaky"].delay()

        async def second_attempt() -> bool:
            info = await flaky.info()
            return info.status is TaskStatus.STARTED and info.attempt == 2

        await eventually(second_attempt, what="attempt 2 STARTED")
        pair.gate.set()
        assert await handle.result(timeout=20) == "done"
        assert await flaky.result(timeout=20) == 2
        assert await handle.status() is TaskStatus.SUCCESS


@_check("app", durable=False)
async def progress_reported_early_is_kept(contract: Contract) -> None:
    """Progress reported at once stays visible: the worker's deferred STARTED record (made a
    moment into every run) must not overwrite it with a STARTED without progress."""
    async with running(contract) as pair:
        handle = await pair.client.tasks["reports_early"].delay()

        async def past_the_deferred_started() -> bool:
            return "reported early" in pair.calls

        await eventually(past_the_deferred_started, what="the task to pass its own work")
        info = await handle.info()
        assert (info.status, info.progress, info.progress_message) == (
            TaskStatus.STARTED,
            0.25,
            "early",
        ), info
        pair.gate.set()
        assert await handle.result(timeout=20) == "done"


@_check("app", durable=True)
async def a_redelivered_task_that_succeeded_is_not_run_again(contract: Contract) -> None:
    """A worker recorded SUCCESS, then died before its ack: the redelivery is skipped and
    the caller gets the recorded result."""
    gate, calls = asyncio.Event(), list[str]()
    sender = _app(contract, "contract-client", gate, calls)
    async with sender:
        handle = await sender.tasks["add"].delay(1, 1)
        # Take the message unacked, as a worker would; record its outcome; "die".
        taker = _app(contract, "contract-taker", gate, calls)
        async with taker:
            delivery = await taker.transport.get(taker.names.work_queue("default"))
            assert delivery is not None
            done = TaskState(handle.id, TaskStatus.SUCCESS, "add", 1, result=42)
            await taker.store.record(done, reply_to=None)
        async with running(contract) as pair:
            assert await handle.result(timeout=20) == 42
            # the redelivery (counted, republished) and its copy (skipped)
            await pair.handled(2)
            assert pair.calls == [], pair.calls


@_check("app", durable=True)
async def a_task_id_sent_twice_runs_once(contract: Contract) -> None:
    """Two sends with one task ID: it runs once, and both callers get the first result."""
    async with running(contract) as pair:
        add = pair.client.tasks["add"]
        task_id = _id()
        first = await add.options(task_id=task_id).delay(1, 2)
        assert await first.result(timeout=20) == 3
        second = await add.options(task_id=task_id).delay(5, 5)
        assert await second.result(timeout=20) == 3
        await pair.handled(2)
        assert pair.calls == ["add(1, 2)"], pair.calls


@_check("app", durable=True)
async def lookup_by_id_from_another_app(contract: Contract) -> None:
    """Another App (another process, as far as the store knows) looks a task up by ID and
    waits for one it did not send."""
    async with running(contract) as pair:
        done = await pair.client.tasks["add"].delay(20, 22)
        assert await done.result(timeout=20) == 42
        gate, calls = asyncio.Event(), list[str]()
        other = _app(contract, "contract-other", gate, calls)
        async with other:
            assert await other.handle(done.id).result(timeout=20) == 42
            later = _id()
            waiting = asyncio.ensure_future(other.handle(later).result(timeout=30))
            await pair.client.tasks["add"].options(task_id=later).delay(1, 1)
            assert await waiting == 2
            info = await other.handle(done.id).info()
            assert info.status is TaskStatus.SUCCESS and info.task_name == "add", info
