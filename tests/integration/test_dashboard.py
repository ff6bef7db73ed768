"""``taskq dashboard`` in Chromium, against the real broker and real worker processes.

One dashboard (a real ``taskq dashboard`` subprocess, with a token, two alert rules and a
webhook to a local receiver) and three ``taskq-worker --events`` processes serve the whole
module: starting them is the slow part. Chromium is Debian's, driven by Playwright (no browser
download). With ``TASKQ_DASHBOARD_SCREENSHOTS=DIR`` the tests also save the screenshots of
docs/operations/dashboard.md there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App, TaskFailed
from taskq.sync import SyncClient
from taskq.workflow import WorkflowHandle, chain
from tests import dashboard_support
from tests.apps.ops_app import add
from tests.dashboard_support import (
    DashboardProcess,
    WebhookReceiver,
    until,
)
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

# Pages in a browser: the worker's queue layout is not what these tests are about.
pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
SHOTS = os.environ.get("TASKQ_DASHBOARD_SCREENSHOTS")
WORKERS = ("w-main", "w-spare", "w-doomed")


@dataclasses.dataclass
class World:
    prefix: str
    state: Path
    dashboard: DashboardProcess
    workers: dict[str, WorkerProcess]
    receiver: WebhookReceiver
    client: SyncClient

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url

    def api(self, path: str) -> Any:
        response = httpx.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard")
    receiver = WebhookReceiver()
    workers = {name: WorkerProcess(APP, prefix, "--name", name, "--events") for name in WORKERS}
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--history", str(state / "history.sqlite3"),
        "--sample-interval", "0.5", "--alert-dead-letters", "--alert-worker-missing",
        "--webhook", receiver.url,
    )  # fmt: skip
    client = App("dash-client", broker=BROKER, prefix=prefix, events=True).sync
    try:
        for worker in workers.values():
            until(lambda w=worker: "consuming" in w.output(), timeout=30, what="a worker")
        dashboard.start()
        yield World(prefix, state, dashboard, workers, receiver, client)
    finally:
        client.close()
        dashboard.kill()
        for worker in workers.values():
            worker.kill()
        receiver.close()
        asyncio.run(delete_topology(prefix, ["default"]))


def shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"dashboard-{name}.png"), full_page=True)


def test_token_is_required(browser: Browser, world: World) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        response = page.goto(f"{world.url}/")
        assert response is not None and response.status == 401
        assert "token" in page.content()
        response = page.goto(f"{world.url}/api/overview?token=wrong")
        assert response is not None and response.status == 401
        page.goto(f"{world.url}/tasks?q=nothing&token={TOKEN}")
        assert page.url == f"{world.url}/tasks?q=nothing"  # the token left the address bar
        expect(page.locator("#tasks")).to_contain_text("No task found")
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["value"] != TOKEN
        assert httpx.get(f"{world.url}/api/overview").status_code == 401
    finally:
        context.close()


def test_overview_shows_running_workers_and_the_queue(page: Page, world: World) -> None:
    handle = world.client.send("add", 2, 3)
    assert handle.result(timeout=30) == 5
    row = page.locator('#workers tr[data-worker="w-main"]')
    expect(row).to_contain_text("running")
    expect(page.locator('#queues tr[data-queue="default"]')).to_be_visible()
    expect(page.locator(f'#recent tr[data-task="{handle.id}"]')).to_contain_text("SUCCESS")


def test_task_moves_from_started_to_succeeded_live(page: Page, world: World) -> None:
    release = world.state / f"release-{uuid.uuid4().hex}"
    handle = world.client.send("hold", str(release))
    page.goto(f"{world.url}/tasks/{handle.id}")
    state = page.locator("#task-state")
    expect(state).to_have_text("STARTED", timeout=20_000)
    expect(page.locator("#task-args")).to_contain_text(str(release))
    page.evaluate("window.notReloaded = true")
    release.touch()
    expect(state).to_have_text("SUCCESS", timeout=20_000)
    assert page.evaluate("window.notReloaded") is True  # it changed live, not by a reload
    expect(page.locator("#task-result")).to_contain_text(str(release))
    events = page.locator("#timeline tr[data-event]")
    expect(events).to_have_count(4)  # sent, received, started, succeeded
    shot(page, "task")


def test_failed_task_alert_webhook_and_replay_from_the_button(page: Page, world: World) -> None:
    fixed = world.state / f"fixed-{uuid.uuid4().hex}"
    handle = world.client.send("fail_unless", str(fixed), "no luck at amqp://bob:s3cret@db/")
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)

    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("FAILURE")
    traceback = page.locator("#task-traceback")
    expect(traceback).to_contain_text("in fail_unless")
    expect(traceback).to_contain_text("ValueError: no luck at amqp://bob:***@db/")
    assert "s3cret" not in page.content()
    shot(page, "failed-task")

    until(lambda: world.receiver.matching("firing", "dead-letters", "default"),
          what="the dead-letters alert at the webhook")  # fmt: skip
    page.goto(f"{world.url}/")
    expect(page.locator("section.alerts")).to_contain_text("new dead letter(s) in default")

    page.goto(f"{world.url}/queues/default")
    row = page.locator(f'#dead tr[data-task="{handle.id}"]')
    expect(row).to_contain_text("max-attempts")
    expect(row).to_contain_text("amqp://bob:***@db/")
    assert "s3cret" not in page.content()
    shot(page, "dead-letters")
    fixed.touch()
    row.locator("button.replay").click()
    expect(page.locator(".notice")).to_contain_text("replayed 1 message(s)")
    assert handle.id not in page.locator("#dead").inner_text()

    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=20_000)
    expect(page.locator("#task-result")).to_contain_text("fixed")
    expect(page.locator('#timeline tr[data-event="task.started"]')).to_have_count(2)
    until(lambda: world.receiver.matching("resolved", "dead-letters", "default"),
          what="the dead-letters alert to resolve")  # fmt: skip


def test_purge_asks_for_confirmation(page: Page, world: World) -> None:
    handle = world.client.send("fail_unless", "/nonexistent/path", "to purge")
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)
    page.goto(f"{world.url}/queues/default")
    expect(page.locator(f'#dead tr[data-task="{handle.id}"]')).to_be_visible()
    page.locator("#purge").click()
    page.locator("#confirm").fill("not-the-name")
    page.locator("#purge-confirm").click()
    expect(page.locator(".notice")).to_contain_text("not purged")
    expect(page.locator(f'#dead tr[data-task="{handle.id}"]')).to_be_visible()
    page.locator("#purge").click()
    page.locator("#confirm").fill("default")
    page.locator("#purge-confirm").click()
    expect(page.locator(".notice")).to_contain_text("purged 1 dead letter(s)")
    expect(page.locator("#dead")).to_contain_text("No dead letters")


def test_shutdown_button_stops_a_worker_gracefully(page: Page, world: World) -> None:
    row = page.locator('#workers tr[data-worker="w-spare"]')
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button").click()
    expect(page.locator(".notice")).to_contain_text("w-spare: stopping gracefully")
    spare = world.workers["w-spare"]
    until(lambda: spare.process.poll() is not None, what="w-spare to exit")
    assert spare.process.returncode == 0
    # It stopped because the button asked it to, through its own graceful stop.
    log = spare.output()
    assert "shutdown requested over the control plane" in log, log
    assert "worker w-spare stopped" in log, log
    expect(page.locator('#workers tr[data-worker="w-spare"]')).to_contain_text("stopped")
    seen = world.api("/api/overview")["time"]
    until(lambda: world.api("/api/overview")["time"] > seen + 1.5, what="three more readings")
    assert "w-spare" not in [m["worker"] for m in world.api("/api/workers")["missing"]]


def test_killed_worker_shows_as_missing_and_alerts(page: Page, world: World) -> None:
    doomed = world.workers["w-doomed"]
    doomed.signal(signal.SIGKILL)
    doomed.process.wait(10)
    row = page.locator('#workers tr.missing[data-worker="w-doomed"]')
    expect(row).to_contain_text("missing: gone", timeout=20_000)
    until(lambda: world.receiver.matching("firing", "worker-missing", "w-doomed"),
          what="the worker-missing alert at the webhook")  # fmt: skip
    expect(page.locator("section.alerts")).to_contain_text("w-doomed went away")
    shot(page, "overview")
    metrics = httpx.get(f"{world.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert 'taskq_alert_firing{rule="worker-missing",subject="w-doomed"} 1' in metrics.text
    assert 'taskq_queue_ready{queue="default"}' in metrics.text


def test_actions_need_csrf_and_nothing_shows_a_password(page: Page, world: World) -> None:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    purge = f"{world.url}/api/queues/default/dead/purge"
    with httpx.Client(cookies=cookies) as browser_like:
        assert browser_like.post(purge, json={"confirm": "default"}).status_code == 403
        csrf = browser_like.get(f"{world.url}/api/session").json()["csrf"]
        foreign = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        refused = browser_like.post(purge, json={"confirm": "default"}, headers=foreign)
        assert refused.status_code == 403
        ok = browser_like.post(purge, json={"confirm": "default"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200 and ok.json() == {"purged": 0}
        bodies = [
            browser_like.get(world.url + path).text
            for path in ("/", "/api/overview", "/api/session", "/metrics", "/tasks")
        ]
    assert all("guest:guest" not in body for body in bodies)
    assert "amqp://guest:***@127.0.0.1" in bodies[1]


def test_a_workflow_step_links_its_workflow_and_lists_its_members(page: Page, world: World) -> None:
    async def send() -> WorkflowHandle[int]:
        return await chain(add.s(1, 2), add.s(10), add.s(100)).delay(app=world.client.app)

    handle = world.client.run(send())
    assert world.client.run(handle.result(timeout=30)) == 113
    root = handle.workflow_id
    assert root is not None
    page.goto(f"{world.url}/tasks/{handle.id}")  # the last step
    members = page.locator("#workflow-members tr[data-task]")
    expect(members).to_have_count(3, timeout=20_000)
    expect(members.first).to_have_attribute("data-task", root)  # the first step
    for row in members.all():
        expect(row.locator(".state")).to_have_text("SUCCESS", timeout=20_000)
    expect(page.locator("#task-parent")).to_be_visible()
    page.locator("#workflow-link").click()
    expect(page.locator("#workflow-states")).to_contain_text("3 task(s)")
    expect(page.locator("#workflow-members tr[data-task]")).to_have_count(3)
    found = world.api(f"/api/workflows/{root}")
    assert [m["state"] for m in found["members"]] == ["SUCCESS"] * 3
    assert found["members"][2]["parent_id"] == found["members"][1]["task_id"]
    shot(page, "workflow")


def test_history_survives_a_restart(world: World) -> None:
    # Its own tasks: under pytest-xdist this test may be the first of the module on its
    # worker (a world of its own, with nothing in the history yet).
    done = world.state / f"done-{uuid.uuid4().hex}"
    done.touch()
    handles = [world.client.send("add", 1, 2), world.client.send("fail_unless", str(done), "")]
    for handle in handles:
        handle.result(timeout=30)

    def settled() -> list[dict[str, Any]] | None:
        tasks = world.api("/api/tasks?limit=1000")["tasks"]
        ours = {t["task_id"]: t["state"] for t in tasks}
        return tasks if all(ours.get(h.id) == "SUCCESS" for h in handles) else None

    known = until(settled, what="the test's tasks in the history")
    assert world.dashboard.stop() == 0
    world.dashboard.start()
    for task in known:
        assert world.api(f"/api/tasks/{task['task_id']}")["state"] == task["state"]
    assert world.api("/api/tasks?q=fail_unless&state=SUCCESS")["tasks"]


# The newest chart of the default queue, as drawn: the top label of its y axis, the largest
# value it draws, the times of its points, and the newest values it shows as text.
CHART = """() => {
  const chart = charts.get("default");
  if (!chart) return null;
  const [time, rin, rout] = chart.plot.data;
  return { top: chart.labels[0].textContent, max: Math.max(0, ...rin, ...rout), time,
           now: [...chart.now.map((e) => e.textContent), rin.at(-1), rout.at(-1)] };
}"""


def test_rate_charts_have_a_scale_and_values_and_survive_a_restart(
    page: Page, world: World
) -> None:
    handles = [world.client.send("add", i, i) for i in range(40)]
    for handle in handles:
        handle.result(timeout=30)
    chart = page.locator("#chart-default")
    # The y axis: 0, half the top and the top, a round number above what the chart draws.
    drawn = until(lambda: (c := page.evaluate(CHART)) and float(c["top"]) > 1 and c,
                  what="a y axis scaled to the traffic")  # fmt: skip
    assert float(drawn["top"]) >= drawn["max"] > 1
    labels = chart.locator(".rates-axis span").all_text_contents()
    assert [float(v) for v in labels] == [float(labels[0]), float(labels[0]) / 2, 0]
    expect(chart.locator(".rates-unit")).to_have_text("msg/s")
    # The newest values, without hovering.
    shown_in, shown_out, newest_in, newest_out = drawn["now"]
    assert shown_in.startswith("in ") and shown_out.startswith("out ")
    shown = (float(shown_in.removeprefix("in ")), float(shown_out.removeprefix("out ")))
    assert shown == (pytest.approx(newest_in, rel=0.01), pytest.approx(newest_out, rel=0.01))
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways page scroll
    expect(chart.locator(".rates-axis")).to_be_attached()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    stopped = time.time()
    assert world.dashboard.stop() == 0
    world.dashboard.start()
    page.goto(f"{world.url}/?token={TOKEN}")
    # At once, the chart holds the readings from before the restart, the traffic's too.
    before = until(lambda: (c := page.evaluate(CHART)) and [t for t in c["time"] if t < stopped],
                   what="readings from before the restart")  # fmt: skip
    last_minute = {t for t in drawn["time"] if t > drawn["time"][-1] - 60}
    assert last_minute and last_minute <= set(before)


def test_tasks_are_found_by_several_states_and_a_time_range(page: Page, world: World) -> None:
    began = time.time()
    fine = world.client.send("add", 20, 22)
    assert fine.result(timeout=30) == 42
    broken = world.client.send("fail_unless", f"/nonexistent/{uuid.uuid4().hex}", "refine me")
    with pytest.raises(TaskFailed):
        broken.result(timeout=30)
    since = began - 60  # the dashboard's clock and this one are the same machine's
    ended = ("FAILURE", "DEAD")

    def listed(query: str) -> set[str]:
        return {t["task_id"] for t in world.api(f"/api/tasks?limit=1000&{query}")["tasks"]}

    every = f"since={since}&state=SUCCESS&state=FAILURE&state=DEAD"
    until(lambda: {fine.id, broken.id} <= listed(every), what="both tasks listed")
    failed = listed(f"since={since}&state=FAILURE&state=DEAD")
    assert broken.id in failed and fine.id not in failed
    assert not listed(f"since={time.time() + 3600}")  # the range is applied
    assert not listed(f"until={since}&state=SUCCESS") & {fine.id, broken.id}
    assert httpx.get(world.url + "/api/tasks?since=yesterday",
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400  # fmt: skip

    page.goto(f"{world.url}/tasks")
    form = page.locator("#refine")
    for state in ended:
        form.locator(f'input[name="state"][value="{state}"]').check()
    form.locator("#since").fill(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(since)))
    form.locator("#refine-button").click()
    expect(page.locator(f'#tasks tr[data-task="{broken.id}"]')).to_be_visible()
    expect(page.locator(f'#tasks tr[data-task="{fine.id}"]')).to_have_count(0)
    assert "state=FAILURE" in page.url and "state=DEAD" in page.url
    for state in ended:  # the form keeps what was asked
        expect(form.locator(f'input[name="state"][value="{state}"]')).to_be_checked()
