"""``taskq dashboard --root-path /taskq`` behind a reverse proxy (issue 26), in Chromium.

The proxy (tests.dashboard_support.PrefixProxy) serves the real ``taskq dashboard`` at
``http://127.0.0.1:PROXY/taskq/`` the way nginx's ``location /taskq/ { proxy_pass
http://127.0.0.1:PORT/; }`` does: it strips the prefix and forwards with ``Host:
127.0.0.1:PORT``, not the browser's. A real ``taskq-worker --events`` runs the tasks. The
browser logs in, goes to every page by its links, posts forms and sees live updates through
the proxied event streams; no request, link or redirect may leave the prefix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App, TaskFailed
from taskq.sync import SyncClient
from taskq.workflow import WorkflowHandle, chain
from tests import dashboard_support
from tests.apps.ops_app import add
from tests.dashboard_support import DashboardProcess, PrefixProxy, until
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixture: Chromium

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
ROOT = "/taskq"
WAIT = 20_000  # ms a page may take to show what a worker or the broker did


@dataclasses.dataclass
class World:
    prefix: str
    state: Path
    proxy: PrefixProxy
    dashboard: DashboardProcess
    worker: WorkerProcess
    client: SyncClient

    @property
    def url(self) -> str:
        """The dashboard as browsers reach it: through the proxy, under the prefix."""
        return self.proxy.origin + ROOT

    def state_of(self, task_id: str) -> str | None:
        """The task's state in the dashboard's history (asked through the proxy)."""
        answer = httpx.get(f"{self.url}/api/tasks/{task_id}",
                           headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        return str(answer.json()["state"]) if answer.status_code == 200 else None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-subpath")
    proxy = PrefixProxy(ROOT)
    worker = WorkerProcess(APP, prefix, "--name", "w-sub", "--events")
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--root-path", ROOT,
        "--public-origin", proxy.origin, "--history", str(state / "history.sqlite3"),
        "--sample-interval", "0.5",
    )  # fmt: skip
    client = App("dash-subpath-client", broker=BROKER, prefix=prefix, events=True).sync
    try:
        until(lambda: "consuming" in worker.output(), timeout=30, what="the worker")
        host, port = httpx.URL(dashboard.start()).host, httpx.URL(dashboard.url).port
        assert port is not None
        proxy.upstream = (host, port)
        yield World(prefix, state, proxy, dashboard, worker, client)
    finally:
        client.close()
        dashboard.kill()
        worker.kill()
        proxy.close()
        asyncio.run(delete_topology(prefix, ["default"]))


def test_every_page_links_acts_and_updates_live_under_the_prefix(
    browser: Browser, world: World
) -> None:
    fixed = world.state / f"fixed-{uuid.uuid4().hex}"
    broken = world.client.send("fail_unless", str(fixed), "until fixed")
    with pytest.raises(TaskFailed):
        broken.result(timeout=30)

    async def send() -> WorkflowHandle[int]:
        return await chain(add.s(1, 2), add.s(10)).delay(app=world.client.app)

    flow = world.client.run(send())
    assert world.client.run(flow.result(timeout=30)) == 13
    until(lambda: world.state_of(flow.id) == "SUCCESS", what="the workflow in the history")
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    try:
        log_in_and_see_the_overview_live(page, world)
        assert flow.workflow_id is not None
        visit_tasks_a_task_and_its_workflow(page, world, flow.id, flow.workflow_id)
        replay_from_the_queue_page(page, world, broken.id, fixed)
        change_a_limit(page, world)
        cancel_a_running_task(page, world)
    finally:
        context.close()
    assert [url for url in asked if not url.startswith((world.url + "/", "data:"))] == []
    assert world.proxy.outside() == []
    assert world.proxy.locations and all(
        location.startswith(ROOT + "/") for location in world.proxy.locations
    ), world.proxy.locations
    assert f"{ROOT}/api/stream?view=overview" in world.proxy.seen
    assert f"{ROOT}/static/app.js" in world.proxy.seen


def log_in_and_see_the_overview_live(page: Page, world: World) -> None:
    page.goto(f"{world.url}/?token={TOKEN}")
    assert page.url == f"{world.url}/"  # redirected under the prefix, without the token
    (cookie,) = page.context.cookies()
    assert cookie["path"] == ROOT
    expect(page.locator('#workers tr[data-worker="w-sub"]')).to_contain_text("running")
    assert page.evaluate("typeof uPlot") == "function"  # static files under the prefix
    page.evaluate("window.notReloaded = true")
    later = world.client.send("add", 2, 3)
    assert later.result(timeout=30) == 5
    row = page.locator(f'#recent tr[data-task="{later.id}"]')
    expect(row).to_contain_text("SUCCESS", timeout=WAIT)  # through the proxied event stream
    assert page.evaluate("window.notReloaded") is True


def visit_tasks_a_task_and_its_workflow(page: Page, world: World, task_id: str, root: str) -> None:
    page.locator("nav").get_by_role("link", name="Tasks").click()
    expect(page).to_have_url(f"{world.url}/tasks")
    page.locator(f'#tasks tr[data-task="{task_id}"] a').click()
    expect(page).to_have_url(f"{world.url}/tasks/{task_id}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS")
    page.locator("#workflow-link").click()
    expect(page.locator("#workflow-states")).to_contain_text("2 task(s)")
    expect(page).to_have_url(f"{world.url}/workflows/{root}")
    page.locator(f'#workflow-members tr[data-task="{root}"] a').first.click()
    expect(page).to_have_url(f"{world.url}/tasks/{root}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS")


def replay_from_the_queue_page(page: Page, world: World, task_id: str, fixed: Path) -> None:
    page.locator("nav").get_by_role("link", name="Overview").click()
    page.locator('#queues tr[data-queue="default"] a.dead').click()
    expect(page).to_have_url(f"{world.url}/queues/default")
    row = page.locator(f'#dead tr[data-task="{task_id}"]')
    expect(row).to_contain_text("max-attempts")
    fixed.touch()
    row.locator("button.replay").click()  # a POST form, then a redirect
    expect(page.locator(".notice")).to_contain_text("replayed 1 message(s)", timeout=WAIT)
    assert page.url.startswith(f"{world.url}/queues/default?notice=")
    search = page.locator("header form.search")  # a GET form: an exact ID redirects
    search.locator('input[name="q"]').fill(task_id)
    search.get_by_role("button", name="Search").click()
    expect(page).to_have_url(f"{world.url}/tasks/{task_id}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=WAIT)


def change_a_limit(page: Page, world: World) -> None:
    page.locator("nav").get_by_role("link", name="Limits").click()
    expect(page).to_have_url(f"{world.url}/limits")
    row = page.locator('#limits tr[data-task="hold"]')
    row.get_by_label("rate limit of hold").fill("50/s")
    row.get_by_role("button", name="Change").click()
    said = "limits of hold changed: rate 50/s"
    expect(page.locator(".notice")).to_contain_text(said, timeout=WAIT)
    expect(page.locator('#limits tr[data-task="hold"] .rate-now')).to_have_text("50/s")


def cancel_a_running_task(page: Page, world: World) -> None:
    release = world.state / f"never-{uuid.uuid4().hex}"
    held = world.client.send("hold", str(release), 120.0)
    page.locator("a.brand").click()
    page.locator(f'#recent tr[data-task="{held.id}"] a').click(timeout=WAIT)
    expect(page).to_have_url(f"{world.url}/tasks/{held.id}")
    expect(page.locator("#task-state")).to_have_text("STARTED", timeout=WAIT)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#cancel-reason").fill("through the proxy")
    page.locator("#cancel-button").click()
    expect(page.locator(".notice")).to_contain_text("cancelled: through the proxy", timeout=WAIT)
    expect(page.locator("#task-state")).to_have_text("CANCELLED", timeout=WAIT)
    # The worker's own event arrives later, through the task's proxied event stream.
    expect(page.locator('#timeline tr[data-event="task.cancelled"]')).to_have_count(2, timeout=WAIT)


def test_redirects_cookies_and_origins_behind_the_proxy(world: World) -> None:
    with httpx.Client(headers={"Accept": "text/html"}) as client:
        login = client.get(f"{world.url}/limits?token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == f"{ROOT}/limits"
        assert f"Path={ROOT}" in login.headers["set-cookie"]
        slash = client.get(f"{world.url}/limits/")  # Starlette's own redirect
        assert slash.is_redirect and slash.headers["location"] == f"{ROOT}/limits"
        api_error = client.get(f"{world.url}/api/tasks?limit=many")
        assert api_error.status_code == 400 and "limit" in api_error.json()["error"]
        csrf = client.get(f"{world.url}/api/session").json()["csrf"]
        change = f"{world.url}/api/limits/add"

        def post(origin: str, token: str = csrf) -> httpx.Response:
            headers = {"X-CSRF-Token": token, "Origin": origin}
            return client.post(change, json={"rate": "90/s"}, headers=headers)

        assert post(world.proxy.origin).status_code == 200  # the public origin
        refused = post("http://evil.example")
        assert refused.status_code == 403 and "--public-origin" in refused.json()["error"]
        assert post(world.proxy.origin, token="forged").status_code == 403  # CSRF still needed
    unknown = httpx.get(f"{world.url}/api/overview", headers={"Accept": "text/html"})
    assert unknown.status_code == 401 and "token required" in unknown.json()["error"]
