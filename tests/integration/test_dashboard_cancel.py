"""The dashboard's Cancel button, in Chromium, against a real ``taskq dashboard`` and a real
``taskq-worker --events``: an operator cancels a running task and a delayed one, and the page
shows CANCELLED with the reason; a viewer sees no button and cannot cancel."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App, TaskCancelled
from taskq.sync import SyncClient
from tests import dashboard_support
from tests.dashboard_support import DashboardProcess, until
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
VIEWER = "v1ewer-" + uuid.uuid4().hex
HELD = 120.0  # seconds a held task runs unless it is cancelled
WAIT = 20_000  # ms a page may take to show what a worker or the broker did (a loaded machine)
DELAY = 8  # seconds a delayed task waits (time enough to open its page and cancel it)


@dataclasses.dataclass
class World:
    prefix: str
    state: Path
    dashboard: DashboardProcess
    worker: WorkerProcess
    client: SyncClient

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url

    def task(self, task_id: str, token: str = TOKEN) -> httpx.Response:
        return httpx.get(f"{self.url}/api/tasks/{task_id}",
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-cancel")
    worker = WorkerProcess(APP, prefix, "--name", "w-cancel", "--events")
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--viewer-token", VIEWER,
        "--history", str(state / "history.sqlite3"), "--sample-interval", "0.5",
    )  # fmt: skip
    client = App("dash-cancel-client", broker=BROKER, prefix=prefix, events=True).sync
    try:
        until(lambda: "consuming" in worker.output(), timeout=30, what="the worker")
        dashboard.start()
        yield World(prefix, state, dashboard, worker, client)
    finally:
        client.close()
        dashboard.kill()
        worker.kill()
        asyncio.run(delete_topology(prefix, ["default"]))


def state_of(world: World, task_id: str, *states: str) -> dict[str, Any]:
    """The dashboard's record of ``task_id`` once it is in one of ``states``."""

    def found() -> dict[str, Any] | None:
        response = world.task(task_id)
        task: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return task if task is not None and task["state"] in states else None

    return until(found, what=f"{task_id} in {states}")


def cancel_from_the_page(page: Page, reason: str) -> None:
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-reason").fill(reason)
    page.locator("#cancel-button").click()


def test_the_cancel_button_stops_a_running_task(page: Page, world: World) -> None:
    release = world.state / f"never-{uuid.uuid4().hex}"
    handle = world.client.send("hold", str(release), HELD)
    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("STARTED", timeout=20_000)
    page.set_viewport_size({"width": 390, "height": 844})  # the button fits a phone too
    expect(page.locator("#cancel-button")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    cancel_from_the_page(page, "stuck on a dead printer")
    expect(page.locator(".notice")).to_contain_text(
        "cancelled: stuck on a dead printer", timeout=WAIT
    )
    expect(page.locator("#task-state")).to_have_text("CANCELLED", timeout=WAIT)
    expect(page.locator("#task-status")).to_contain_text("(stuck on a dead printer)", timeout=WAIT)
    expect(page.locator("#cancel")).to_be_hidden()  # an ended task has no button
    with pytest.raises(TaskCancelled, match="stuck on a dead printer"):
        handle.result(timeout=20)
    # The worker stopped it, and its own event joins the timeline; the state stays.
    expect(page.locator('#timeline tr[data-event="task.cancelled"]')).to_have_count(2, timeout=WAIT)
    assert state_of(world, handle.id, "CANCELLED")["reason"] == "stuck on a dead printer"


def test_a_delayed_task_shows_cancelled_at_once_and_never_runs(page: Page, world: World) -> None:
    # It would fail if it ran (TaskFailed): TaskCancelled shows the worker dropped it.
    later = world.client.app.named("fail_unless").options(countdown=DELAY)
    handle = world.client.send(later, "/nonexistent", "never meant to run")
    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("PENDING", timeout=20_000)
    cancel_from_the_page(page, "")
    expect(page.locator("#task-state")).to_have_text("CANCELLED", timeout=WAIT)
    expect(page.locator("#task-status")).to_contain_text(
        "(cancelled from the dashboard)", timeout=WAIT
    )
    with pytest.raises(TaskCancelled, match="cancelled from the dashboard"):
        handle.result(timeout=DELAY + 30)  # the worker met it once its delay ended
    expect(page.locator('#timeline tr[data-event="task.cancelled"]')).to_have_count(2, timeout=WAIT)
    expect(page.locator("#task-state")).to_have_text("CANCELLED", timeout=WAIT)


def test_a_viewer_cannot_cancel(browser: Browser, world: World) -> None:
    release = world.state / f"release-{uuid.uuid4().hex}"
    handle = world.client.send("hold", str(release), HELD)
    state_of(world, handle.id, "STARTED")
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    refused = httpx.post(f"{world.url}/api/tasks/{handle.id}/cancel", json={}, headers=viewer)
    assert refused.status_code == 403 and "operator" in refused.json()["error"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{world.url}/tasks/{handle.id}?token={VIEWER}")
        expect(page.locator("#task-state")).to_have_text("STARTED", timeout=WAIT)
        assert page.locator("#cancel").count() == 0
        csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
        form = page.request.post(f"{world.url}/tasks/{handle.id}/cancel", max_redirects=0,
                                 form={"csrf": csrf, "reason": "a viewer tries"})  # fmt: skip
        assert form.status == 403, form.text()
    finally:
        context.close()
    # The operator's browser without the page's CSRF token is refused too.
    with httpx.Client(follow_redirects=True) as no_csrf:
        login = no_csrf.get(f"{world.url}/?token={TOKEN}")
        assert login.status_code == 200
        assert no_csrf.post(f"{world.url}/api/tasks/{handle.id}/cancel", json={}).status_code == 403
    release.touch()
    assert handle.result(timeout=20) == str(release)  # nothing cancelled it
