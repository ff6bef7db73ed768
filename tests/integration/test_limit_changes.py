"""Limits changed at runtime (taskq.limits.changes) against the real broker: ``taskq control``
reaches a running worker, and a worker started later reads the change from the stream."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from taskq import App
from taskq.limits import LimitChange, RateLimit, publish_change
from taskq.limits.changes import changes_made
from tests.support import BROKER, eventually, run_taskq, running_worker

DEADLINE = 30.0


def make_app(prefix: str, ran: list[str]) -> App:
    app = App("changes", broker=BROKER, prefix=prefix)

    @app.task
    async def gated(tag: str) -> str:
        ran.append(tag)
        return tag

    @app.task(concurrency_limit=1)
    async def single(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return app


def test_a_change_is_checked_and_merged() -> None:
    with pytest.raises(Exception, match="invalid rate limit"):
        LimitChange("t", rate="fast")
    with pytest.raises(Exception, match="count >= 1"):
        LimitChange("t", concurrency=0)
    merged = LimitChange("t", rate="5/s").then(LimitChange("t", concurrency=3))
    assert (merged.rate, merged.concurrency) == ("5/s", 3)


async def test_a_rate_limit_set_at_runtime_reaches_running_and_later_workers(
    prefix: str, topology_cleanup: set[str]
) -> None:
    ran: list[str] = []
    app = make_app(prefix, ran)
    async with app:
        async with running_worker(app) as one:
            assert await (await app.tasks["gated"].delay("free")).result(timeout=DEADLINE)
            done = await run_taskq(prefix, "control", "rate-limit", "gated", "2/m")
            assert done.code == 0, done.err
            changed = time.monotonic()
            handles = [await app.tasks["gated"].delay(f"t{i}") for i in range(4)]

            async def two_ran_two_deferred() -> bool:
                return len(ran) == 3 and one.counters.deferred >= 2

            await eventually(two_ran_two_deferred, what="the new limit on the running worker")
            print(f"limit in force {time.monotonic() - changed:.3f} s after the command")
        async with running_worker(app) as two:  # started after the change: reads it
            more = [await app.tasks["gated"].delay(f"u{i}") for i in range(2)]

            async def deferred_too() -> bool:
                return two.counters.deferred >= 2

            await eventually(deferred_too, what="the restarted worker to apply the limit")
            assert len(ran) == 3
            for handle in handles + more:
                await handle.cancel(reason="done testing")
        shown = await run_taskq(prefix, "control", "limits", "--json")
        assert json.loads(shown.out)[0]["rate"] == "2/m"
        await app.transport.delete_queue(RateLimit(2, 60.0).queue(app.names, "gated"))


async def test_a_concurrency_limit_changed_at_runtime(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app = make_app(prefix, [])
    async with app, running_worker(app) as worker:
        await publish_change(app.transport, app.names, LimitChange("single", concurrency=2))
        await publish_change(app.transport, app.names, LimitChange("gated", rate="5/s"))
        await publish_change(app.transport, app.names, LimitChange("gated", rate="off"))
        made = await changes_made(app.transport, app.names, DEADLINE)
        assert made["single"].concurrency == 2 and made["gated"].rate == "off"
        handles = [await app.tasks["single"].delay(0.3) for _ in range(4)]
        for handle in handles:
            await handle.result(timeout=DEADLINE)
        assert worker.counters.failed == 0


async def test_the_cli_refuses_a_bad_limit(prefix: str) -> None:
    done = await run_taskq(prefix, "control", "rate-limit", "gated", "lots")
    assert done.code == 2 and "invalid rate limit" in done.err
