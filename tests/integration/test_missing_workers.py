"""Which workers are missing, as ``taskq inspect ping`` (and the dashboard) tell it.

Missing means a worker of *this* broker, vhost and prefix that went away without saying so.
Real ``taskq-worker`` processes: one stops gracefully (SIGTERM, exit 0) and is not missing;
one on another vhost with the same prefix is never expected here; one SIGKILLed is missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq.control import GONE
from tests.support import BROKER, WorkerProcess, run_taskq

# one-queue only: presence, not the worker's queues, is under test
pytestmark = pytest.mark.one_queue_only

APP = "tests.apps.ops_app:app"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def other_vhost() -> Iterator[str]:
    """A vhost of its own on the test broker (guest may use it), deleted afterwards."""
    name = f"tq-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        _rabbitmqctl("delete_vhost", name)


async def ping(prefix: str, state: Path, broker: str = BROKER) -> tuple[int, dict[str, Any]]:
    code, out, _ = await run_taskq(
        prefix, "--app", APP, "inspect", "ping", "--json", "--timeout", "2",
        broker=broker, env={"TASKQ_STATE_DIR": str(state)},
    )  # fmt: skip
    return code, json.loads(out)


def answered(result: dict[str, Any]) -> list[str]:
    return [r["worker"] for r in result["replies"]]


def missing(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["worker"], m["state"]) for m in result["missing"]]


@pytest.mark.idle_extra_queue  # one worker runs on a vhost the noise feeder does not reach
async def test_graceful_stop_other_vhost_and_sigkill(
    prefix: str, topology_cleanup: set[str], tmp_path: Path, other_vhost: str
) -> None:
    elsewhere = BROKER.rstrip("/") + "/" + other_vhost
    first = WorkerProcess(APP, prefix, "--name", "w1")
    second = WorkerProcess(APP, prefix, "--name", "w2")
    remote = WorkerProcess(APP, prefix, "--name", "w3", env={"TASKQ_BROKER": elsewhere})
    try:
        await asyncio.gather(first.wait_ready(), second.wait_ready(), remote.wait_ready())
        code, result = await ping(prefix, tmp_path, elsewhere)
        assert (code, answered(result), missing(result)) == (0, ["w3"], [])

        # Same prefix, same state directory, other vhost: w3 is not expected here.
        code, result = await ping(prefix, tmp_path)
        assert (code, answered(result), missing(result)) == (0, ["w1", "w2"], [])

        second.signal(signal.SIGTERM)
        assert await second.wait_exit() == 0
        for _ in range(2):  # and not on the next ping either: it is forgotten
            code, result = await ping(prefix, tmp_path)
            assert (code, answered(result), missing(result)) == (0, ["w1"], [])

        first.signal(signal.SIGKILL)
        await first.wait_exit()
        code, result = await ping(prefix, tmp_path)
        assert code == 1
        assert (answered(result), missing(result)) == ([], [("w1", GONE)])

        remote.signal(signal.SIGTERM)
        assert await remote.wait_exit() == 0
    finally:
        for process in (first, second, remote):
            process.kill()  # the killed w1's presence queue is deleted with the topology
