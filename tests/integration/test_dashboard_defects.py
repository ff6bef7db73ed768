"""The defects of issue 26, each tested where an operator meets it: in Chromium and in the API
of a real ``taskq dashboard`` subprocess, against a real ``taskq-worker --events``.

One worker, one ``taskq events --json`` tail (what any event consumer receives) and one
dashboard on a fixed port (a restart keeps it, as in production) serve the module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App, TaskFailed
from taskq.sync import SyncClient
from tests import dashboard_support
from tests.dashboard_support import (
    DashboardProcess,
    WebhookReceiver,
    free_port,
    until,
)
from tests.support import BROKER, REPO, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
SECRET = "hunter2-" + uuid.uuid4().hex[:8]
SUCCESSES_KEPT = 20
VIEWER = "v1ewer-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclasses.dataclass
class World:
    prefix: str
    state: Path
    history: Path
    dashboard: DashboardProcess
    worker: WorkerProcess
    tail: subprocess.Popen[bytes]
    tail_path: Path
    receiver: WebhookReceiver
    client: SyncClient
    client_app: App

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=AUTH)

    def api(self, path: str) -> Any:
        response = self.get(path)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=AUTH)


def client_app(prefix: str) -> App:
    """A sender that has ``login`` (so that its calls bind to the signature, as users' do)."""
    app = App("dash-client", broker=BROKER, prefix=prefix, events=True)

    @app.task
    async def login(user: str, password: str) -> str:
        raise NotImplementedError  # the worker runs tests.apps.ops_app's

    return app


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-defects")
    history = state / "history.sqlite3"
    receiver = WebhookReceiver()
    worker = WorkerProcess(APP, prefix, "--name", "w-one", "--events")
    env = {**os.environ, "TASKQ_PREFIX": prefix, "TASKQ_BROKER": BROKER, "PYTHONPATH": str(REPO)}
    tail_path = state / "events.jsonl"
    with tail_path.open("wb") as out:
        tail = subprocess.Popen(
            [sys.executable, "-m", "taskq.cli.admin", "events", "--json"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--history", str(history), "--port",
        str(free_port()), "--sample-interval", "0.5", "--alert-dead-letters",
        "--history-max", str(SUCCESSES_KEPT), "--viewer-token", VIEWER,
        "--webhook", receiver.url,
    )  # fmt: skip
    sender = client_app(prefix)
    client = sender.sync
    try:
        until(lambda: "consuming" in worker.output(), timeout=30, what="the worker")
        dashboard.start()
        yield World(prefix, state, history, dashboard, worker, tail, tail_path, receiver,
                    client, sender)  # fmt: skip
    finally:
        client.close()
        dashboard.kill()
        tail.kill()
        tail.wait(10)
        worker.kill()
        receiver.close()
        asyncio.run(delete_topology(prefix, ["default"]))


def known(world: World, task_id: str, *states: str) -> dict[str, Any]:
    """The dashboard's record of ``task_id`` once it is in one of ``states``."""

    def found() -> dict[str, Any] | None:
        response = world.get(f"/api/tasks/{urllib.parse.quote(task_id, safe='')}")
        if response.status_code != 200:
            return None
        task: dict[str, Any] = response.json()
        return task if task["state"] in states else None

    return until(found, what=f"{task_id} in {states}")


# -- 1. secrets ------------------------------------------------------------------------------

CALLS = {
    "positional": (("bob", SECRET), {}),
    "password-by-keyword": (("bob",), {"password": SECRET}),
    "all-by-keyword": ((), {"user": "bob", "password": SECRET}),
}


def test_a_password_is_never_shown_nor_stored_however_it_is_passed(
    page: Page, world: World
) -> None:
    login = world.client_app.tasks["login"]
    ids = []
    for args, kwargs in CALLS.values():
        handle = world.client.send(login, *args, **kwargs)
        with pytest.raises(TaskFailed):
            handle.result(timeout=30)
        ids.append(handle.id)
    for task_id in ids:
        assert known(world, task_id, "FAILURE", "DEAD")["args"] == "'bob', '***'"
        page.goto(f"{world.url}/tasks/{task_id}")
        expect(page.locator("#task-args")).to_have_text("'bob', '***'")
        assert SECRET not in page.content()
        until(lambda t=task_id: t in world.get("/api/queues/default/dead").text,
              what="the dead letter")  # fmt: skip
    page.goto(f"{world.url}/queues/default")
    expect(page.locator(f'#dead tr[data-task="{ids[0]}"]')).to_be_visible()
    surfaces = {
        "dead-letter page": page.content(),
        "dead-letter API": world.get("/api/queues/default/dead").text,
        "task API": "".join(world.get(f"/api/tasks/{t}").text for t in ids),
        "search API": world.get("/api/tasks?q=login").text,
        "overview API": world.get("/api/overview").text,
        "events": world.tail_path.read_text(errors="replace"),
        "worker log": world.worker.output(),
        "dashboard log": world.dashboard.output(),
    }
    assert ids[0] in surfaces["events"]
    for what, text in surfaces.items():
        assert SECRET not in text, what
    for path in world.state.glob("history.sqlite3*"):
        assert SECRET.encode() not in path.read_bytes(), path.name


# -- 2. failures kept apart ------------------------------------------------------------------


def test_a_flood_of_successes_leaves_every_failure_findable(page: Page, world: World) -> None:
    failed = world.client.send("fail", "kept through the flood")
    with pytest.raises(TaskFailed):
        failed.result(timeout=30)
    known(world, failed.id, "FAILURE", "DEAD")
    first = world.client.send("add", 0, 0)
    flood = [world.client.send("add", i, i) for i in range(SUCCESSES_KEPT * 3)]
    assert [h.result(timeout=30) for h in [first, *flood]][-1] == 2 * (SUCCESSES_KEPT * 3 - 1)

    def pruned() -> bool:
        response = world.get(f"/api/tasks/{first.id}")
        return response.status_code == 404 and response.json().get("pruned") is True

    until(pruned, what="the first success to be pruned")
    page.goto(f"{world.url}/tasks?state=FAILURE")
    expect(page.locator(f'#tasks tr[data-task="{failed.id}"]')).to_be_visible()
    page.goto(f"{world.url}/queues/default")
    page.locator(f'#dead tr[data-task="{failed.id}"] a').click()
    expect(page.locator("#task-state")).to_have_text("FAILURE")
    page.goto(f"{world.url}/tasks/{first.id}")
    expect(page.locator("#task-pruned")).to_contain_text("Pruned: the dashboard saw this task")
    expect(page.locator("#task-pruned")).to_contain_text("SUCCESS")


# -- 3. alerts across a restart --------------------------------------------------------------


def dead_letters_alert(world: World) -> list[dict[str, Any]]:
    return [a for a in world.api("/api/alerts")["alerts"] if a["rule"] == "dead-letters"]


def readings_after(world: World, moment: float, count: int = 3) -> None:
    """Wait until the dashboard took ``count`` more readings after ``moment``."""
    until(lambda: world.api("/api/overview")["time"] > moment + count * 0.5,
          what="more readings")  # fmt: skip


def test_a_firing_alert_survives_a_restart_and_resolves_after_it(page: Page, world: World) -> None:
    assert world.post("/api/queues/default/dead/purge", {"confirm": "default"}).is_success
    until(lambda: not dead_letters_alert(world), what="no dead-letters alert")
    fired = len(world.receiver.matching("firing", "dead-letters", "default"))
    resolved = len(world.receiver.matching("resolved", "dead-letters", "default"))
    handle = world.client.send("fail", "dead before the restart")
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)
    until(lambda: len(world.receiver.matching("firing", "dead-letters", "default")) > fired,
          what="the alert at the webhook")  # fmt: skip

    assert world.dashboard.stop() == 0
    world.dashboard.start()
    readings_after(world, world.api("/api/overview")["time"])
    assert dead_letters_alert(world), "the alert fires after the restart (baseline kept)"
    assert len(world.receiver.matching("firing", "dead-letters", "default")) == fired + 1
    page.goto(f"{world.url}/")
    expect(page.locator("section.alerts")).to_contain_text("new dead letter(s) in default")
    expect(page.locator("ul.transitions")).to_contain_text("firing")

    assert world.post("/api/queues/default/dead/purge", {"confirm": "default"}).is_success
    until(lambda: len(world.receiver.matching("resolved", "dead-letters", "default")) > resolved,
          what="the resolution at the webhook")  # fmt: skip
    expect(page.locator("ul.transitions li").first).to_contain_text("resolved")


# -- 4. replay without a dead-letter queue ---------------------------------------------------


def test_replaying_a_queue_without_a_dead_letter_queue_is_a_clear_404(
    page: Page, world: World
) -> None:
    queue = f"never-{uuid.uuid4().hex[:6]}"
    answer = world.post(f"/api/queues/{queue}/dead/replay", {"all": True})
    assert answer.status_code == 404, answer.text
    assert "no dead-letter queue" in answer.json()["error"]
    response = page.goto(f"{world.url}/queues/{queue}")
    assert response is not None and response.status == 200
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    form = page.request.post(f"{world.url}/queues/{queue}/replay",
                             form={"csrf": csrf or "", "all": "1"}, max_redirects=0)  # fmt: skip
    assert form.status == 404, form.text()
    assert f"{queue} has no dead-letter queue" in form.text()


# -- 5. odd task IDs -------------------------------------------------------------------------

ODD_IDS = ["hash#tag", "what?x=1&y=2", "dir/sub/leaf", "with space", "ünï çødé 日本", "%41 #?/ ü"]


def test_task_ids_with_reserved_characters_work_in_links_redirects_and_the_api(
    page: Page, world: World
) -> None:
    suffix = uuid.uuid4().hex[:6]
    ids = [f"{odd}-{suffix}" for odd in ODD_IDS]
    add = world.client_app.named("add")
    for task_id in ids:
        assert world.client.send(add.options(task_id=task_id), 1, 2).result(timeout=30) == 3
    for task_id in ids:
        assert known(world, task_id, "SUCCESS")["task_id"] == task_id
    page.goto(f"{world.url}/")
    for task_id in ids:
        page.goto(f"{world.url}/")
        page.locator(f'#recent tr[data-task="{task_id}"] a').click()
        expect(page.locator("#task-state")).to_have_text("SUCCESS")
        expect(page.locator("h1 code")).to_have_text(task_id)
        page.goto(f"{world.url}/tasks?state=SUCCESS")
        page.locator(f'#tasks tr[data-task="{task_id}"] a').click()
        expect(page.locator("#task-state")).to_have_text("SUCCESS")
        page.goto(f"{world.url}/tasks?{urllib.parse.urlencode({'q': task_id})}")  # the search
        expect(page.locator("h1 code")).to_have_text(task_id)
        expect(page.locator("#task-result")).to_have_text("3")


# -- 6. alert messages follow the values -----------------------------------------------------


def test_a_firing_alert_message_follows_the_current_values(page: Page, world: World) -> None:
    assert world.post("/api/queues/default/dead/purge", {"confirm": "default"}).is_success
    until(lambda: not dead_letters_alert(world), what="no dead-letters alert")
    page.goto(f"{world.url}/")
    alerts = page.locator("section.alerts")
    for count in (1, 2):
        with pytest.raises(TaskFailed):
            world.client.send("fail", f"dead letter {count}").result(timeout=30)
        expected = f"{count} new dead letter(s) in default ({count} in all)"
        expect(alerts).to_contain_text(expected, timeout=20_000)
    assert len(dead_letters_alert(world)) == 1


# -- 7. a replayed task ----------------------------------------------------------------------


def test_a_replayed_task_shows_the_replay_and_each_run_apart(page: Page, world: World) -> None:
    fixed = world.state / f"fixed-{uuid.uuid4().hex}"
    handle = world.client.send("fail_unless", str(fixed), "not yet")
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)
    until(lambda: handle.id in world.get("/api/queues/default/dead").text, what="its letter")
    page.goto(f"{world.url}/queues/default")
    row = page.locator(f'#dead tr[data-task="{handle.id}"]')
    expect(row.locator("td.error")).to_contain_text("ValueError: not yet")  # no hovering
    row.locator("summary").click()
    expect(row.locator("td.error pre")).to_contain_text("in fail_unless")
    fixed.touch()
    page.locator(f'#dead tr[data-task="{handle.id}"] button.replay').click()
    expect(page.locator(".notice")).to_contain_text("replayed 1 message(s)")

    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=20_000)
    expect(page.locator("#task-status")).to_have_text("SUCCESS")  # no "(max-attempts)"
    expect(page.locator('#timeline tr[data-event="task.replayed"]')).to_have_count(1)
    runs = page.locator("#attempts tbody tr")
    expect(runs).to_have_count(2)
    expect(runs.nth(0)).to_contain_text("failed (ValueError)")
    expect(runs.nth(1)).to_contain_text("succeeded")
    assert [c.inner_text() for c in runs.locator("td:first-child").all()] == ["1", "2"]
    assert world.api(f"/api/tasks/{handle.id}")["reason"] is None


# -- 8. CSRF across a restart ----------------------------------------------------------------


def test_a_page_opened_before_a_restart_can_still_act(page: Page, world: World) -> None:
    page.goto(f"{world.url}/queues/default/purge")
    before = world.url
    assert world.dashboard.stop() == 0
    assert world.dashboard.start() == before  # the same address, as in production
    page.locator("#confirm").fill("default")
    page.locator("#purge-confirm").click()
    expect(page.locator(".notice")).to_contain_text("dead letter(s)")
    assert "CSRF" not in page.content()


# -- 9. notices ------------------------------------------------------------------------------


def test_a_crafted_link_cannot_put_text_in_the_banner(page: Page, world: World) -> None:
    crafted = "Session expired: call +1 555 0100 with your token"
    for query in ({"notice": crafted}, {"notice": crafted, "sig": "0" * 64}):
        page.goto(f"{world.url}/?{urllib.parse.urlencode(query)}")
        expect(page.locator("#workers")).to_be_visible()
        expect(page.locator(".notice")).to_have_count(0)
        assert "555 0100" not in page.content()
    page.goto(f"{world.url}/queues/default/purge")
    page.locator("#confirm").fill("not-default")
    page.locator("#purge-confirm").click()
    expect(page.locator(".notice")).to_have_text("not purged: the confirmation did not match")


# -- 10. worker discovery --------------------------------------------------------------------


def test_right_after_a_start_the_workers_are_being_discovered(page: Page, world: World) -> None:
    assert world.dashboard.stop() == 0
    world.dashboard.start()
    answer = world.api("/api/workers")
    assert answer["discovering"] or answer["workers"], answer
    page.goto(f"{world.url}/")
    workers = page.locator("#workers")
    assert "No worker answered" not in workers.inner_text()
    expect(page.locator('#workers tr[data-worker="w-one"]')).to_contain_text("running")
    # A worker's own event can show it before the first reading of the workers ends (that
    # reading is what ends discovery): wait for it, with a deadline.
    until(lambda: world.api("/api/workers")["discovering"] is False, what="discovery to end")


# -- narrow screens (what operators still miss) ----------------------------------------------


def test_pages_are_usable_on_a_narrow_screen(page: Page, world: World) -> None:
    handle = world.client.send("add", 4, 5)
    assert handle.result(timeout=30) == 9
    known(world, handle.id, "SUCCESS")
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/tasks", "/queues/default", f"/tasks/{handle.id}"):
        page.goto(f"{world.url}{path}")
        expect(page.locator("table").first).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways: {width} px"
        boxes = page.locator(".scroll").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)")  # fmt: skip
        assert boxes and max(boxes) <= 390, (path, boxes)
    page.goto(f"{world.url}/")
    shot = os.environ.get("TASKQ_DASHBOARD_SCREENSHOTS")
    if shot:
        page.screenshot(path=str(Path(shot) / "dashboard-narrow.png"), full_page=True)


# -- delayed tasks (what operators still miss) -----------------------------------------------


def test_a_delayed_task_shows_its_eta(page: Page, world: World) -> None:
    eta = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    add = world.client_app.named("add")
    handle = world.client.send(add.options(eta=eta), 1, 1)
    assert known(world, handle.id, "PENDING")["eta"] == eta.isoformat()
    page.goto(f"{world.url}/tasks/{handle.id}")
    expect(page.locator("#task-eta")).to_have_text(eta.isoformat())
    expect(page.locator("#task-state")).to_have_text("PENDING")


def test_delayed_tasks_are_listed_soonest_first(page: Page, world: World) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add = world.client_app.named("add")
    later = world.client.send(add.options(eta=now + dt.timedelta(hours=3)), 2, 2)
    sooner = world.client.send(add.options(countdown=7200), 3, 3)
    known(world, later.id, "PENDING")
    known(world, sooner.id, "PENDING")
    page.goto(f"{world.url}/")
    page.locator("#delayed").click()
    expect(page.locator('select[name="state"]')).to_have_value("DELAYED")
    ids = page.locator("#tasks tbody tr").evaluate_all("rows => rows.map(r => r.dataset.task)")
    assert ids.index(sooner.id) < ids.index(later.id), ids
    row = page.locator(f'#tasks tr[data-task="{later.id}"] td.eta')
    expect(row).to_have_text((now + dt.timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S"))


# -- paging (what operators still miss) ------------------------------------------------------


def follow(page: Page, link: str) -> None:
    """Click ``link`` and wait until the page it leads to has loaded (a read straight after
    the click may meet the page between the two documents, with no rows)."""
    with page.expect_navigation():
        page.locator(link).click()


def test_task_lists_and_dead_letters_are_paged(page: Page, world: World) -> None:
    assert world.post("/api/queues/default/dead/purge", {"confirm": "default"}).is_success
    handles = [world.client.send("fail", f"paged {i}") for i in range(105)]
    for handle in handles:
        with pytest.raises(TaskFailed):
            handle.result(timeout=60)
    sent = {h.id for h in handles}
    until(lambda: world.api("/api/queues/default/dead")["total"] == 105, what="105 letters")
    until(lambda: sent <= {t["task_id"] for t in world.api("/api/tasks?state=FAILURE&limit=1000")
                           ["tasks"]}, what="the failures in the history")  # fmt: skip

    def rows() -> list[str]:
        return page.locator("#tasks tbody tr, #dead tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.task)")  # fmt: skip

    page.goto(f"{world.url}/tasks?state=FAILURE")
    first = rows()
    assert len(first) == 100
    follow(page, "#older")
    listed = first + rows()
    assert sent <= set(listed) and len(listed) == len(set(listed))

    page.goto(f"{world.url}/queues/default")
    letters: list[str] = []
    for _ in range(3):
        letters += rows()
        if page.locator("#next-page").count():
            follow(page, "#next-page")
    assert len(letters) == 105 and set(letters) == sent
    expect(page.locator(".pager")).to_contain_text("101 to 105 of 105")
    api_pages = [world.api(f"/api/queues/default/dead?page={n}")["dead"] for n in range(3)]
    assert [d["task_id"] for p in api_pages for d in p] == letters
    assert world.get("/api/queues/default/dead?page=x").status_code == 400


# -- read-only access (what operators still miss) --------------------------------------------


def test_a_viewer_token_sees_everything_and_acts_on_nothing(browser: Browser, world: World) -> None:
    with pytest.raises(TaskFailed):
        world.client.send("fail", "seen by a viewer").result(timeout=30)
    until(lambda: world.api("/api/queues/default/dead")["total"], what="a dead letter")
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    assert httpx.get(f"{world.url}/api/overview", headers=viewer).status_code == 200
    refused = httpx.post(f"{world.url}/api/queues/default/dead/replay", json={"all": True},
                         headers=viewer)  # fmt: skip
    assert refused.status_code == 403 and "operator" in refused.json()["error"]
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{world.url}/queues/default?token={VIEWER}")
        expect(page.locator("#dead tbody tr").first).to_be_visible()
        expect(page.locator(".readonly")).to_contain_text("Read-only access")
        assert page.locator("form[method=post]").count() == 0
        page.goto(f"{world.url}/")
        expect(page.locator('#workers tr[data-worker="w-one"]')).to_be_visible()
        assert page.locator("form[method=post]").count() == 0
        csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
        form = page.request.post(f"{world.url}/queues/default/purge", max_redirects=0,
                                 form={"csrf": csrf, "confirm": "default"})  # fmt: skip
        assert form.status == 403, form.text()
        assert world.api("/api/queues/default/dead")["total"]  # nothing was purged
    finally:
        context.close()
