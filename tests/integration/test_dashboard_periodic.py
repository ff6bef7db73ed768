"""The dashboard's Periodic page (issue 26: "a page with the schedule, last and next firing,
the active scheduler, and a *Run now* button that keeps firing IDs unique"), in Chromium
against the real ``taskq dashboard``, a real ``taskq beat`` and a real ``taskq-worker
--events``: the page shows what the scheduler publishes; Run now makes the worker run the
entry's task under a new ID at each click; a viewer sees no button and is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import socket
import uuid
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests import dashboard_support
from tests.dashboard_support import DashboardProcess, until
from tests.support import BeatProcess, WorkerProcess, delete_topology, unique_prefix

SHOTS = os.environ.get("TASKQ_DASHBOARD_SCREENSHOTS")  # a directory: the docs' screenshots

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.beatapp:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
VIEWER = "v1ewer-" + uuid.uuid4().hex
BEAT = "beat-of-the-page"
WAIT = 20_000  # ms a page may take to show what a worker or the broker did (a loaded machine)
RUN_ID = re.compile(r"periodic:stamp:run:[0-9a-f]{32}")
ENV = {"BEAT_ENTRIES": "dashboard"}  # stamp every second, report and login by cron


@dataclasses.dataclass
class World:
    prefix: str
    ledger: Path
    dashboard: DashboardProcess
    worker: WorkerProcess
    beat: BeatProcess

    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.dashboard.url

    def api(self, method: str, path: str, token: str = TOKEN, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}",
                             headers={"Authorization": f"Bearer {token}"}, **kwargs)  # fmt: skip

    def stamped(self, task_id: str) -> dict[str, Any]:
        """The ledger's line of the run of ``task_id`` (waits for the worker to run it)."""

        def found() -> dict[str, Any] | None:
            lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
            return next((s for s in map(json.loads, lines) if s["id"] == task_id), None)

        return until(found, what=f"the worker to run {task_id}")

    def start_beat(self) -> None:
        """Replace the scheduler with a new one, once it is active."""
        self.beat = active_beat(self.prefix)


def active_beat(prefix: str) -> BeatProcess:
    """A new ``taskq beat``, once it holds the lease."""
    beat = BeatProcess(APP, prefix, "--name", BEAT, env=ENV)
    try:
        until(lambda: beat.active, timeout=30, what="the scheduler to become active")
    except BaseException:
        beat.kill()
        raise
    return beat


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-periodic")
    ledger = state / "ledger.jsonl"
    worker = WorkerProcess(APP, prefix, "--name", "w-periodic", "--events",
                           env={**ENV, "BEAT_LEDGER": str(ledger)})  # fmt: skip
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--viewer-token", VIEWER,
        "--history", str(state / "history.sqlite3"), "--sample-interval", "0.5",
    )  # fmt: skip
    dashboard.env.update(ENV)
    beats: list[BeatProcess] = []
    try:
        until(lambda: WorkerProcess.READY.search(worker.output()), timeout=30, what="the worker")
        beats.append(active_beat(prefix))
        dashboard.start()
        world = World(prefix, ledger, dashboard, worker, beats[0])
        yield world
        beats.append(world.beat)
    finally:
        dashboard.kill()
        for beat in beats:
            beat.kill()
        worker.kill()
        asyncio.run(delete_topology(prefix, ["default"]))


def row(page: Page, entry: str) -> Locator:
    return page.locator(f'#periodic tr[data-entry="{entry}"]')


def scheduler_named(page: Page, name: str) -> Locator:
    return page.locator("#scheduler-name").filter(has_text=re.compile(f"^{re.escape(name)}$"))


def reload_until(page: Page, locator: Locator, what: str) -> None:
    """Reload the page until ``locator`` is on it (the page shows what it read when served)."""

    def shown() -> bool:
        page.reload()
        return locator.count() > 0

    until(shown, what=what)


def next_berlin_three(now: dt.datetime) -> dt.datetime:
    """The first 03:00 in Berlin after ``now``, in UTC."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    day = now.astimezone(berlin).date()
    for offset in range(3):
        at = dt.datetime.combine(day + dt.timedelta(days=offset), dt.time(3), berlin)
        if at > now:
            return at.astimezone(dt.UTC)
    raise AssertionError("no 03:00 within three days")


def test_the_page_shows_schedules_firings_and_the_active_scheduler(
    page: Page, world: World
) -> None:
    page.goto(f"{world.url}/")
    page.get_by_role("link", name="Periodic", exact=True).click()
    expect(page.locator("#scheduler-name")).to_have_text(BEAT, timeout=WAIT)
    expect(page.locator("#scheduler-host")).to_have_text(socket.gethostname())
    expect(page.locator("#scheduler time").first).to_have_attribute("datetime", re.compile("Z$"))
    stamp = row(page, "stamp")
    expect(stamp.locator(".schedule")).to_contain_text("every 1s")
    reload_until(page, stamp.locator(".last-id"), "a firing of stamp on the page")
    last_id = stamp.locator(".last-id").inner_text()
    last = stamp.locator(".last time").get_attribute("datetime") or ""
    following = stamp.locator(".next time").get_attribute("datetime") or ""
    assert last_id == f"periodic:stamp:{last}"
    assert following > last  # ISO 8601 in UTC: compared as text
    assert world.stamped(last_id)["sf"] is not None  # the worker ran that very firing

    report = row(page, "report")
    expect(report.locator(".schedule")).to_contain_text("cron '0 3 * * *' Europe/Berlin")
    expect(report.locator(".last")).to_have_text("never")
    expected = next_berlin_three(dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expect(report.locator(".next time")).to_have_attribute("datetime", expected)
    expect(row(page, "login").locator(".args")).to_have_text("'bob', '***'")
    assert "hunter2" not in page.content()
    if SHOTS:  # the docs' screenshot (docs/operations/dashboard.md)
        page.screenshot(path=str(Path(SHOTS) / "dashboard-periodic.png"), full_page=True)

    listed = world.api("GET", "/api/periodic", token=VIEWER).json()
    assert listed["active"]["scheduler"] == BEAT
    assert listed["active"]["host"] == socket.gethostname()
    by_name = {e["name"]: e for e in listed["entries"]}
    assert set(by_name) == {"stamp", "report", "login"}
    assert by_name["stamp"]["task"] == "stamp" and by_name["stamp"]["args"] == "'periodic'"
    assert by_name["stamp"]["last_firing_id"] == f"periodic:stamp:{by_name['stamp']['last_fired']}"
    assert by_name["login"]["args"] == "'bob', '***'"

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways page scroll
    expect(stamp.get_by_role("button", name="Run now")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_run_now_runs_the_task_under_a_new_id_at_each_click(page: Page, world: World) -> None:
    page.goto(f"{world.url}/periodic")
    ids = []
    for _ in range(2):
        row(page, "stamp").get_by_role("button", name="Run now").click()
        notice = page.locator("#run-notice")
        expect(notice).to_contain_text("stamp: run now as task periodic:stamp:run:", timeout=WAIT)
        ids.append(page.locator("#run-task").inner_text())
    assert ids[0] != ids[1] and all(RUN_ID.fullmatch(i) for i in ids), ids
    for task_id in ids:
        assert world.stamped(task_id)["sf"] is None  # run by the worker, for no tick
    page.locator("#run-task").click()  # the notice links to the task's page
    expect(page.locator("h1 code")).to_have_text(ids[1])
    expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=WAIT)

    sent = world.api("POST", "/api/periodic/stamp/run")
    assert sent.status_code == 200, sent.text
    task_id = sent.json()["task_id"]
    assert sent.json()["entry"] == "stamp" and RUN_ID.fullmatch(task_id) and task_id not in ids
    assert world.stamped(task_id)["sf"] is None


def test_a_viewer_sees_no_button_and_cannot_run(browser: Browser, world: World) -> None:
    context = browser.new_context()
    try:
        viewer = context.new_page()
        viewer.goto(f"{world.url}/periodic?token={VIEWER}")
        expect(row(viewer, "stamp")).to_be_visible(timeout=WAIT)
        expect(viewer.locator("#scheduler-name")).to_have_text(BEAT)
        expect(viewer.locator("form.run-now")).to_have_count(0)
        csrf = viewer.locator('meta[name="csrf-token"]').get_attribute("content") or ""
        form = viewer.request.post(f"{world.url}/periodic/stamp/run", max_redirects=0,
                                   form={"csrf": csrf})  # fmt: skip
        assert form.status == 403, form.text()
    finally:
        context.close()
    refused = world.api("POST", "/api/periodic/stamp/run", token=VIEWER)
    assert refused.status_code == 403 and "operator" in refused.json()["error"]


def test_the_operator_needs_the_pages_csrf_token(page: Page, world: World) -> None:
    page.goto(f"{world.url}/periodic")
    refused = page.request.post(f"{world.url}/periodic/stamp/run", max_redirects=0,
                                form={"csrf": "forged"})  # fmt: skip
    assert refused.status == 403 and "CSRF" in refused.text()


def test_an_unknown_entry_is_not_found(page: Page, world: World) -> None:
    missing = world.api("POST", "/api/periodic/no-such-entry/run")
    assert missing.status_code == 404 and "no-such-entry" in missing.json()["error"]
    page.goto(f"{world.url}/periodic")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    form = page.request.post(f"{world.url}/periodic/no-such-entry/run", max_redirects=0,
                             form={"csrf": csrf})  # fmt: skip
    assert form.status == 404 and "no periodic entry named" in form.text()


def test_the_page_says_when_no_scheduler_holds_the_lease(page: Page, world: World) -> None:
    world.beat.signal(signal.SIGTERM)  # it gives up the lease at once
    until(lambda: world.beat.process.poll() is not None, what="the scheduler to stop")
    try:
        page.goto(f"{world.url}/periodic")
        reload_until(page, scheduler_named(page, "none"), "no scheduler on the page")
        assert world.api("GET", "/api/periodic").json()["active"] is None
        expect(row(page, "stamp").locator(".last-id")).to_be_visible()  # what it last wrote
    finally:
        world.beat.kill()
        world.start_beat()  # the other tests need one, whatever their order
    reload_until(page, scheduler_named(page, BEAT), "the new scheduler on the page")
