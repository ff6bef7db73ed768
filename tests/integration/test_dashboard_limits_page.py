"""The dashboard's Limits page (issue 23: limits change at runtime "with ``taskq control`` and
the dashboard"), in Chromium against the real ``taskq dashboard``: it lists each task's
declared limits and the runtime ones, and an operator changes them with its form; a viewer
sees no form and is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App
from taskq.limits.changes import LimitChange, changes_made
from tests import dashboard_support
from tests.dashboard_support import DashboardProcess
from tests.support import BROKER, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only

browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.limitsapp:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
VIEWER = "v1ewer-" + uuid.uuid4().hex
WAIT = 20_000  # ms


@dataclasses.dataclass
class World:
    prefix: str
    dashboard: DashboardProcess

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-limits")
    dashboard = DashboardProcess(APP, prefix, state, "--token", TOKEN, "--viewer-token", VIEWER)
    try:
        dashboard.start()
        yield World(prefix, dashboard)
    finally:
        dashboard.kill()
        asyncio.run(delete_topology(prefix, ["default"]))


def made(prefix: str) -> dict[str, LimitChange]:
    """The changes every worker reads from the limits stream."""

    async def read() -> dict[str, LimitChange]:
        async with App("reader", broker=BROKER, prefix=prefix) as app:
            return await changes_made(app.transport, app.names, 30.0)

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
        return thread.submit(asyncio.run, read()).result()


def test_an_operator_changes_a_tasks_limits_from_the_page(page: Page, world: World) -> None:
    page.goto(f"{world.url}/limits")
    row = page.locator('#limits tr[data-task="hold"]')
    expect(row.locator("td").nth(3)).to_have_text("1")  # declared: concurrency_limit=1
    row.get_by_label("rate limit of hold").fill("7/s")
    row.get_by_label("concurrency limit of hold").fill("4")
    row.get_by_role("button", name="Change").click()
    said = "limits of hold changed: rate 7/s, concurrency 4"
    expect(page.locator(".notice")).to_contain_text(said, timeout=WAIT)
    row = page.locator('#limits tr[data-task="hold"]')
    expect(row.locator(".rate-now")).to_have_text("7/s")
    expect(row.locator(".concurrency-now")).to_have_text("4")
    change = made(world.prefix)["hold"]
    assert (change.rate, change.concurrency) == ("7/s", 4)

    row.get_by_label("rate limit of hold").fill("fast")
    row.get_by_role("button", name="Change").click()
    expect(page.get_by_text("invalid rate limit 'fast'")).to_be_visible(timeout=WAIT)
    assert made(world.prefix)["hold"].rate == "7/s"  # a refused change changes nothing


def test_a_viewer_sees_the_limits_but_no_form_and_cannot_post(
    browser: Browser, world: World
) -> None:
    context = browser.new_context()
    try:
        viewer = context.new_page()
        viewer.goto(f"{world.url}/limits?token={VIEWER}")
        expect(viewer.locator('#limits tr[data-task="hold"]')).to_be_visible(timeout=WAIT)
        expect(viewer.locator("form.limits")).to_have_count(0)
    finally:
        context.close()
    refused = httpx.post(f"{world.url}/api/limits/hold", json={"rate": "1/s"},
                         headers={"Authorization": f"Bearer {VIEWER}"})  # fmt: skip
    assert refused.status_code == 403
