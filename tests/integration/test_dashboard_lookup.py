"""A task the dashboard never saw (issue 26): its page and the API look it up in the durable
result store, then in the dead-letter queues, and say where what they show came from; only
then do they say "not seen". The worker here publishes no events, so the dashboard's history
knows none of its tasks; the real ``taskq dashboard`` and a real worker, in Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aio_pika
import httpx
import pytest
from playwright.sync_api import Page, expect

from taskq import App
from taskq.sync import SyncClient
from tests import dashboard_support
from tests.dashboard_support import DashboardProcess, until
from tests.integration.test_result_store_contract import delete_redis_keys
from tests.redis_support import REDIS_URL
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only

browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
WAIT = 20_000  # ms a page may take to show what a worker or the broker did


@dataclasses.dataclass
class World:
    prefix: str
    dashboard: DashboardProcess
    worker: WorkerProcess
    client: SyncClient

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url

    def task(self, task_id: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/tasks/{task_id}",
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-lookup")
    stored = {"TASKQ_RESULTS": REDIS_URL}
    worker = WorkerProcess(APP, prefix, "--name", "w-quiet", env=stored)  # no --events
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--history", str(state / "history.sqlite3"),
        "--sample-interval", "0.5",
    )  # fmt: skip
    dashboard.env.update(stored)
    client = App("dash-lookup-client", broker=BROKER, prefix=prefix, results=REDIS_URL).sync
    try:
        until(lambda: worker.READY.search(worker.output()), timeout=30, what="the worker")
        dashboard.start()
        yield World(prefix, dashboard, worker, client)
    finally:
        client.close()
        dashboard.kill()
        worker.kill()
        asyncio.run(delete_topology(prefix, ["default"]))
        asyncio.run(delete_redis_keys(prefix, REDIS_URL))


def found(world: World, task_id: str) -> dict[str, Any]:
    """What the API says of ``task_id`` once it knows something of it."""

    def known() -> dict[str, Any] | None:
        response = world.task(task_id)
        task: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return task

    return until(known, what=f"{task_id} known to the dashboard")


def test_a_task_only_the_result_store_knows_is_shown_from_it(page: Page, world: World) -> None:
    handle = world.client.send("add", 2, 3)
    assert handle.result(timeout=30) == 5
    failed = world.client.send("fail", "the printer is on fire")
    with pytest.raises(Exception, match="the printer is on fire"):
        failed.result(timeout=30)

    task = found(world, handle.id)
    assert (task["state"], task["result"], task["name"]) == ("SUCCESS", "5", "add")
    assert task["source"].startswith("result store") and task["timeline"] == []
    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=WAIT)
    expect(page.locator("#task-result")).to_have_text("5")
    expect(page.locator("#task-source")).to_contain_text("result store")

    page.goto(f"{world.url}/tasks/{failed.id}")
    expect(page.locator("#task-state")).to_have_text("FAILURE", timeout=WAIT)
    expect(page.locator("#task-error")).to_contain_text("ValueError: the printer is on fire")
    expect(page.locator("#task-source")).to_contain_text("result store")


async def publish_garbage(prefix: str, message_id: str) -> None:
    """A body no worker can decode, from a foreign producer: the worker parks it."""
    connection = await aio_pika.connect(BROKER)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(prefix, ensure=False)
        message = aio_pika.Message(b"\xc1 not msgpack", message_id=message_id, type="add",
                                   content_type="application/x-msgpack")  # fmt: skip
        await exchange.publish(message, "default", mandatory=True)
    finally:
        await connection.close()


def test_a_task_only_a_dead_letter_queue_holds_is_shown_from_it(page: Page, world: World) -> None:
    message_id = f"garbage-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
        thread.submit(asyncio.run, publish_garbage(world.prefix, message_id)).result()
    task = found(world, message_id)
    assert (task["state"], task["queue"], task["reason"]) == ("DEAD", "default", "invalid-message")
    assert task["source"] == "dead-letter queue of 'default'"
    page.goto(f"{world.url}/tasks/{message_id}")
    expect(page.locator("#task-state")).to_have_text("DEAD", timeout=WAIT)
    expect(page.locator("#task-source")).to_contain_text("dead-letter queue of 'default'")
    expect(page.locator("#task-status")).to_contain_text("(invalid-message)")


def test_a_task_nothing_knows_is_not_seen(page: Page, world: World) -> None:
    unknown = f"never-{uuid.uuid4().hex}"
    assert world.task(unknown).status_code == 404
    page.goto(f"{world.url}/tasks/{unknown}")
    expect(page.get_by_text("Not seen yet")).to_be_visible()
    expect(page.locator("#task-source")).to_have_count(0)
