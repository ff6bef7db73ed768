"""``taskq send NAME [ARGS...]``: the real CLI in a subprocess, its output and exit codes."""

from __future__ import annotations

import asyncio
import json
import uuid

import msgpack
import pytest

from taskq import App
from taskq.cli.common import ExitCode
from tests.support import (
    BROKER,
    delay_level_messages,
    queue_messages,
    run_taskq,
    running_worker,
)


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    topology_cleanup.add("other")
    app = App("sendcli", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def fail(message: str) -> None:
        raise ValueError(message)

    return app


async def test_send_puts_the_message_where_its_options_say(app: App, prefix: str) -> None:
    plain, placed, later = await asyncio.gather(
        run_taskq(prefix, "send", "add", "2", "3"),
        run_taskq(
            prefix, "send", "greet", "hello", "[1, 2]",
            "--kwargs", '{"punct": "!"}', "--queue", "other", "--priority", "5",
        ),
        run_taskq(prefix, "send", "add", "1", "1", "--countdown", "3600"),
    )  # fmt: skip
    for done in (plain, placed, later):
        assert done.code == ExitCode.OK, done.err
        (line,) = done.out.splitlines()  # the task ID, nothing else
        assert uuid.UUID(line)

    (message,) = await queue_messages(prefix, app.names.work_queue("default"))
    assert (message.message_id, message.type) == (plain.out.strip(), "add")
    assert msgpack.unpackb(message.body)[1:3] == [[2, 3], {}]  # [2, args, kwargs, meta]

    (message,) = await queue_messages(prefix, app.names.work_queue("other"))
    assert (message.message_id, message.type, message.priority) == (placed.out.strip(), "greet", 5)
    # A bare word is a string, anything else a JSON value.
    assert msgpack.unpackb(message.body)[1:3] == [["hello", [1, 2]], {"punct": "!"}]

    assert sum(await delay_level_messages(prefix)) == 1  # the hour-long countdown waits there
    # ...in the queue of its top base-16 digit (3,600,000 ms = 0x36ee80), as inspect says
    shown = await run_taskq(prefix, "inspect", "scheduled", "--json")
    assert shown.code == ExitCode.OK, shown.err
    [level] = json.loads(shown.out)["levels"]
    assert (level["queue"], level["messages"]) == (f"{prefix}.delay16.5.3", 1)
    assert level["ttl_ms"] == 3 * 16**5


async def test_send_and_wait_prints_the_result_or_the_failure(app: App, prefix: str) -> None:
    async with app, running_worker(app):
        added, failed = await asyncio.gather(
            run_taskq(prefix, "send", "add", "2", "3", "--wait", "30"),
            run_taskq(prefix, "send", "fail", "boom", "--wait", "30"),
        )
    assert added.code == ExitCode.OK, added.err
    task_id, result = added.out.splitlines()
    assert uuid.UUID(task_id) and result == "5"
    assert failed.code == ExitCode.CRASHED
    assert "TaskFailed" in failed.err and "boom" in failed.err


async def test_send_failures_have_their_exit_codes(prefix: str, topology_cleanup: set[str]) -> None:
    not_json, not_object, wrong_args, no_result, no_broker = await asyncio.gather(
        run_taskq(prefix, "send", "add", "1", "--kwargs", "{nope"),
        run_taskq(prefix, "send", "add", "1", "--kwargs", "[1]"),
        # With --app the arguments are checked against the task's signature before sending.
        run_taskq(prefix, "send", "add", "1", app="tests.apps.ops_app:app"),
        run_taskq(prefix, "send", "add", "1", "2", "--wait", "0.5"),  # no worker runs
        run_taskq(prefix, "send", "add", "1", env={"TASKQ_BROKER": "amqp://guest:pw@127.0.0.1:1/"}),
    )
    assert not_json.code == ExitCode.USAGE and "--kwargs is not JSON" in not_json.err
    assert not_object.code == ExitCode.USAGE and "must be a JSON object" in not_object.err
    assert wrong_args.code == ExitCode.USAGE
    assert "missing a required argument: 'y'" in wrong_args.err
    assert no_result.code == ExitCode.CRASHED and "ResultTimeout" in no_result.err
    assert no_broker.code == ExitCode.BROKER_UNREACHABLE and "pw" not in no_broker.err
    for refused in (not_json, not_object, wrong_args, no_broker):
        assert refused.out == ""  # nothing was sent, so no task ID
    assert uuid.UUID(no_result.out.strip())  # sent, then timed out waiting
