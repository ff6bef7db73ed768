"""Workflows against the real broker, with each durable store: chain, group, chord, nesting,
link, link_error, failure and a retry inside a member."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from taskq import (
    App,
    ConfigurationError,
    Hook,
    Retry,
    Sending,
    TaskFailed,
    control,
    current,
    dlq,
    events,
)
from taskq.workflow import chain, chord, group
from tests.integration.test_result_store_contract import REDIS, delete_redis_keys
from tests.postgres_support import POSTGRES, drop_tables
from tests.support import BROKER, event_listener, eventually, queue_length, running_worker

# The workflow logic is under test, not the worker's queues.
pytestmark = [pytest.mark.one_queue_only, pytest.mark.usefixtures("topology_cleanup")]

TIMEOUT = 30


@pytest.fixture(params=["redis", "postgres"])
async def results(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[str]:
    """The result store URL of the test (its keys or tables removed afterwards)."""
    if request.param == "redis":
        yield REDIS
        await delete_redis_keys(prefix)
    else:
        table = f"{prefix}_results"
        yield f"{POSTGRES}?taskq_table={table}"
        await drop_tables(table)


class Calls:
    """What the tasks of one test did, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def of(self, name: str) -> list[Any]:
        return [value for task, value in self.log if task == name]


def make_app(prefix: str, results: str, calls: Calls, **settings: Any) -> App:
    app = App("wf", broker=BROKER, prefix=prefix, results=results, **settings)

    @app.task
    async def add(x: int, y: int) -> int:
        calls.log.append(("add", (x, y)))
        return x + y

    @app.task
    async def double(x: int) -> int:
        calls.log.append(("double", x))
        return 2 * x

    @app.task
    async def total(xs: list[int]) -> int:
        calls.log.append(("total", xs))
        return sum(xs)

    @app.task
    async def boom(x: int) -> int:
        calls.log.append(("boom", x))
        raise ValueError(f"boom {x}")

    @app.task
    async def flaky(x: int) -> int:
        calls.log.append(("flaky", x))
        if current().attempt == 1:
            raise Retry(delay=0)
        return x

    @app.task
    async def noted(value: Any) -> None:
        calls.log.append(("noted", value))

    return app


def tasks(app: App) -> Callable[[str], Any]:
    return lambda name: app.tasks[name]


async def test_a_chain_passes_each_result_to_the_next(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app):
        handle = await (t("add").s(1, 2) | t("double").s() | t("double").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 12
        handle = await chain(t("add").s(2, 2), t("add").s(10)).delay()
        assert await handle.result(timeout=TIMEOUT) == 14
    assert calls.of("double") == [3, 6]
    assert calls.of("add")[-1] == (4, 10)


async def test_a_group_gives_the_results_in_order(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app):
        handle = await group(t("double").s(i) for i in range(5)).delay()
        assert await handle.result(timeout=TIMEOUT) == [0, 2, 4, 6, 8]


async def test_a_chord_calls_back_once_with_every_result(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app, concurrency=8):
        members = [t("double").s(i) for i in range(20)]
        handle = await chord(group(members), t("total").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == sum(2 * i for i in range(20))
    assert calls.of("total") == [[2 * i for i in range(20)]]


async def test_nesting_group_in_chain_and_chain_in_group(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app, concurrency=4):
        # a group inside a chain: its members get the result before it; the step after
        # gets their list (a chord)
        flow = t("add").s(1, 1) | group(t("double").s(), t("add").s(10)) | t("total").s()
        assert await (await flow.delay()).result(timeout=TIMEOUT) == 4 + 12
        # a chain inside a group
        flow2 = group(t("add").s(1, 2) | t("double").s(), t("double").s(5))
        assert await (await flow2.delay()).result(timeout=TIMEOUT) == [6, 10]
        # a chord as a group member, and a chain as a chord's callback
        inner = chord([t("double").s(1), t("double").s(2)], t("total").s())
        flow3 = chord([inner, t("double").s(10)], t("total").s() | t("double").s())
        assert await (await flow3.delay()).result(timeout=TIMEOUT) == 2 * (6 + 20)


async def test_link_and_link_error(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app):
        handle = await t("double").s(4).link(t("noted").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 8

        async def noted() -> bool:
            return calls.of("noted") == [8]

        await eventually(noted, what="the link to run")
        failing = t("boom").s(1).link_error(t("noted").s())
        handle = await failing.delay()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=TIMEOUT)

        async def errored() -> bool:
            return calls.of("noted") == [8, handle.id]

        await eventually(errored, what="the error link to get the failed task's ID")


async def test_a_group_link_gets_the_list_of_results(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app, concurrency=4):
        flow = group(t("double").s(1), t("double").s(2)).link(t("noted").s())
        handle = await flow.delay()
        assert await handle.result(timeout=TIMEOUT) == [2, 4]

        async def noted() -> bool:
            return calls.of("noted") == [[2, 4]]

        await eventually(noted, what="the group's link to get the list")


async def test_a_failed_member_fails_the_chain_and_the_chord_once(
    prefix: str, results: str
) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app, concurrency=4):
        flow = t("add").s(1, 1) | t("boom").s() | t("double").s()
        handle = await flow.delay()
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=TIMEOUT)
        assert "boom" in failed.value.remote_message and handle.id == failed.value.task_id
        members = [t("double").s(1), t("boom").s(2), t("boom").s(3)]
        callback = t("total").s().link_error(t("noted").s())
        handle = await chord(members, callback).delay()
        with pytest.raises(TaskFailed, match="workflow step boom"):
            await handle.result(timeout=TIMEOUT)

        async def both_failed() -> list[Any] | None:
            done = sorted(calls.of("boom")) == [2, 2, 3] and len(calls.of("noted")) == 1
            return calls.log if done else None

        await eventually(both_failed, what="both members to fail")
    assert calls.of("double") == [1]  # the chain stopped at its failed step
    assert calls.of("total") == [] and len(calls.of("noted")) == 1


async def test_a_member_that_retries_does_not_fail_the_chord(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    t = tasks(app)
    async with app, running_worker(app, concurrency=4):
        members = [t("double").s(1), t("flaky").s(5)]
        handle = await chord(members, t("total").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 7
        # a step that a worker sent (it carries a claim token) retries as well
        handle = await (t("double").s(3) | t("flaky").s() | t("double").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 12
    assert calls.of("flaky") == [5, 5, 6, 6] and calls.of("total") == [[2, 5]]


async def test_a_chord_with_the_amqp_store_is_refused_before_sending(prefix: str) -> None:
    calls = Calls()
    app = make_app(prefix, "amqp", calls)
    t = tasks(app)
    async with app:
        with pytest.raises(ConfigurationError, match="redis"):
            await chord([t("double").s(1)], t("total").s()).delay()
        # a chain needs no join: it works with replies over AMQP
        async with running_worker(app):
            handle = await (t("add").s(1, 2) | t("double").s()).delay()
            assert await handle.result(timeout=TIMEOUT) == 6
    assert calls.of("double") == [3]


async def test_a_task_awaiting_another_task_is_refused_and_pointed_to_chords(
    prefix: str,
) -> None:
    app = App("wf-wait", broker=BROKER, prefix=prefix)

    @app.task
    async def child() -> int:
        return 1

    @app.task
    async def parent() -> int:
        handle = await child.delay()
        return await handle.result(timeout=5)

    async with app, running_worker(app, concurrency=1):
        handle = await parent.delay()
        with pytest.raises(TaskFailed) as failed:
            await handle.result(timeout=TIMEOUT)
    assert failed.value.remote_type == "taskq.exceptions.WaitRefused"
    assert "chord" in failed.value.remote_message


async def test_a_dlq_replay_of_a_failed_step_resumes_the_workflow(
    prefix: str, results: str
) -> None:
    calls = Calls()
    fixed = {"fragile": False}
    app = make_app(prefix, results, calls)

    @app.task
    async def fragile(x: int) -> int:
        calls.log.append(("fragile", x))
        if not fixed["fragile"]:
            raise RuntimeError(f"fragile {x} broke")
        return x

    t = tasks(app)
    async with app, running_worker(app, concurrency=4):
        flow = chord([t("double").s(1), fragile.s(5)], t("total").s()) | t("double").s()
        handle = await flow.delay()
        with pytest.raises(TaskFailed, match="fragile 5 broke"):
            await handle.result(timeout=TIMEOUT)

        async def dead_lettered() -> bool:
            return await queue_length(app.names.dead_queue("default")) == 1

        await eventually(dead_lettered, what="the failed step in .dead")
        fixed["fragile"] = True
        await dlq.replay(app.sender, "default", lambda dead: dead.task_name == "fragile")
        # The workflow's final task had recorded the failure; the replay resumes it.
        assert await app.handle(handle.id, "double").result(timeout=TIMEOUT) == 14
    assert calls.of("total") == [[2, 5]]


class Capture(Hook):
    """Keeps the envelopes of the messages this App sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def before_send(self, send: Sending) -> None:
        self.sent.append(send.envelope)


async def test_a_member_redelivered_after_the_join_does_not_run_the_callback_again(
    prefix: str, results: str
) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls)
    capture = Capture()
    app.add_hook(capture)
    t = tasks(app)
    async with app, running_worker(app, concurrency=4) as worker:
        handle = await chord([t("double").s(1), t("double").s(2)], t("total").s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 6
        # The last member's worker died after its join, before its ack: the broker delivers
        # it again. It is skipped (it succeeded), sends the callback again (it cannot know
        # whether its first send went out), and that copy is acked without running.
        member = next(e for e in capture.sent if e.task_name == "double")
        again = dataclasses.replace(member, deliveries=1).to_message()
        received = worker.counters.received
        await app.sender.republish(app.names.exchange, member.route, again)

        async def both_handled() -> bool:
            return worker.counters.received >= received + 2 and not worker.active

        await eventually(both_handled, what="the member and the callback copies")
    assert calls.of("total") == [[2, 4]]
    assert sorted(calls.of("double")) == [1, 2]


class Stamp(Hook):
    """Adds a header to every message sent (as a tracing hook adds its context)."""

    async def before_send(self, send: Sending) -> None:
        send.headers["x-stamp"] = "stamped"


async def test_steps_sent_by_the_worker_pass_the_apps_send_hooks(prefix: str, results: str) -> None:
    app = App("wf", broker=BROKER, prefix=prefix, results=results)
    seen: list[tuple[int, Any]] = []

    @app.task
    async def step(x: int) -> int:
        seen.append((x, current().headers.get("x-stamp")))
        return x + 1

    app.add_hook(Stamp())
    async with app, running_worker(app):
        handle = await (step.s(0) | step.s() | step.s()).delay()
        assert await handle.result(timeout=TIMEOUT) == 3
    # The first step is sent by the client, the next two by the worker that ran the one before.
    assert sorted(seen) == [(0, "stamped"), (1, "stamped"), (2, "stamped")]


async def test_events_and_inspect_show_each_steps_workflow(prefix: str, results: str) -> None:
    calls = Calls()
    app = make_app(prefix, results, calls, events=True)
    release = asyncio.Event()

    @app.task
    async def held_total(xs: list[int]) -> int:
        await release.wait()
        return sum(xs)

    t = tasks(app)
    started: list[dict[str, Any]] = []
    async with event_listener(app.names, "task.started") as listener:
        async with app, running_worker(app, concurrency=4):
            flow = await chord([t("double").s(1), t("double").s(2)], held_total.s()).delay()
            steps = await (t("add").s(1, 2) | t("double").s()).delay()
            assert await steps.result(timeout=TIMEOUT) == 6

            async def callback_running() -> list[dict[str, Any]]:
                result = await control.broadcast(app, "active", timeout=2)
                return [t for r in result.replies for t in r.answer if t["task"] == "held_total"]

            (active,) = await eventually(callback_running, what="the callback to run")
            release.set()
            assert await flow.result(timeout=TIMEOUT) == 6

        async def all_started() -> bool:
            while (message := await listener.get(no_ack=True, fail=False)) is not None:
                started.append(events.decode(message.body))
            return len(started) >= 5

        await eventually(all_started, what="the task.started events of the five steps")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for event in started:
        by_name.setdefault(event["task"], []).append(event)
    members = sorted((e for e in by_name["double"] if "join" in e), key=lambda e: e["index"])
    assert [(e["root_id"], e["join"], e["index"], e["of"]) for e in members] == [
        (flow.workflow_id, flow.workflow_id, 0, 2), (flow.workflow_id, flow.workflow_id, 1, 2)
    ]  # fmt: skip
    assert "parent_id" not in members[0]  # sent by the client
    (first,) = by_name["add"]
    (second,) = [e for e in by_name["double"] if "join" not in e]
    assert first["root_id"] == steps.workflow_id == first["task_id"]
    assert (second["parent_id"], second["root_id"]) == (first["task_id"], steps.workflow_id)
    (callback,) = by_name["held_total"]
    assert callback["root_id"] == flow.workflow_id
    assert callback["parent_id"] in {m["task_id"] for m in members}  # the last to join
    assert (active["root_id"], active["parent_id"]) == (flow.workflow_id, callback["parent_id"])
    assert "join" not in active
