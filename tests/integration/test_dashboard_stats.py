"""The dashboard's per-task statistics (issue 26: "rate, failure rate and runtime p50/p95 per
task name over time, charts with axes and values, kept across restarts"), in Chromium against
a real ``taskq dashboard`` and a real ``taskq-worker --events``.

Tasks of two names run (``add`` always succeeds, ``fail_unless`` fails sometimes); the stats
page lists both with their counts and failure rates and charts them; after a restart of the
dashboard process on the same history file, the page still shows them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from taskq import App, TaskFailed
from taskq.dashboard import stats
from taskq.sync import SyncClient
from tests import dashboard_support
from tests.dashboard_support import DashboardProcess, OperatorApi, until
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
WAIT = 20_000  # ms
SHOTS = os.environ.get("TASKQ_DASHBOARD_SCREENSHOTS")  # a directory: the docs' screenshots


@dataclasses.dataclass
class World(OperatorApi):
    prefix: str
    state: Path
    dashboard: DashboardProcess
    worker: WorkerProcess
    client: SyncClient
    token: str = TOKEN
    ran: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """Per task name: how many finished and how many of them failed."""
    ran_at: float = 0.0

    def stats(self) -> dict[str, dict[str, Any]]:
        response = self.get("/api/stats")
        response.raise_for_status()
        return {t["task"]: t for t in response.json()["tasks"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-stats")
    worker = WorkerProcess(APP, prefix, "--name", "w-stats", "--events")
    dashboard = DashboardProcess(APP, prefix, state, "--token", TOKEN,
                                 "--history", str(state / "history.sqlite3"))  # fmt: skip
    client = App("stats-client", broker=BROKER, prefix=prefix).sync
    try:
        until(lambda: "consuming" in worker.output(), timeout=30, what="the worker")
        dashboard.start()
        world = World(prefix, state, dashboard, worker, client)
        run_tasks(world)
        yield world
    finally:
        client.close()
        dashboard.kill()
        worker.kill()
        asyncio.run(delete_topology(prefix, ["default"]))


def run_tasks(world: World) -> None:
    """Five ``add`` that succeed, six ``fail_unless`` of which two fail; then wait until the
    dashboard counted them all."""
    done = world.state / "done"
    done.touch()
    fine = [world.client.send("add", n, 1) for n in range(5)]
    flaky = [world.client.send("fail_unless", str(done), "") for _ in range(4)]
    broken = [world.client.send("fail_unless", str(world.state / "never"), "no luck")
              for _ in range(2)]  # fmt: skip
    for handle in fine + flaky:
        handle.result(timeout=30)
    for handle in broken:
        with pytest.raises(TaskFailed):
            handle.result(timeout=30)
    world.ran = {"add": (5, 0), "fail_unless": (6, 2)}
    world.ran_at = time.time()

    def counted() -> bool:
        found = world.stats()
        return all(name in found and (found[name]["finished"], found[name]["failed"]) == counts
                   for name, counts in world.ran.items())  # fmt: skip

    until(counted, what="the dashboard to count every task")


def check_listing(page: Page, world: World) -> None:
    """The stats page lists both tasks with their counts and failure rates."""
    for name, (finished, failed) in world.ran.items():
        row = page.locator(f'#task-stats tr[data-task="{name}"]')
        failure = f"{100 * failed / finished:.1f} %"
        expect(row.locator(".finished")).to_have_text(str(finished), timeout=WAIT)
        expect(row.locator(".failed")).to_have_text(str(failed))
        expect(row.locator(".failure")).to_have_text(failure)
        if time.time() - world.ran_at < stats.RECENT - 60:  # still in the last 5 minutes
            expect(row.locator(".now-failure")).to_have_text(failure)
            expect(row.locator(".now-p95")).to_contain_text(" ms")


def chart_axes(page: Page, name: str) -> dict[str, Any]:
    """What the task's two charts show: axis labels, whether each axis drew tick values (uPlot
    keeps them as ``_values`` once drawn), the points, the legend's values."""
    section = page.locator(f'section.task-stats[data-task="{name}"]')
    expect(section.locator(".stats-chart.rate canvas")).to_be_visible(timeout=WAIT)
    expect(section.locator(".stats-chart.runtime canvas")).to_be_visible()
    found: dict[str, Any] = page.evaluate(
        """(name) => Object.fromEntries(Object.entries(statsCharts.get(name)).map(([k, p]) => [k, {
            labels: p.axes.map((a) => a.label),
            ticked: p.axes.map((a) => (a._values || []).some((v) => v !== null && v !== "")),
            finished: p.data[1] && k === "rate" ? p.data[1].filter((v) => v > 0).length : null,
            width: p.width,
        }]))""",
        name,
    )
    found["legend"] = section.locator(".u-legend .u-value").all_inner_texts()
    return found


def test_the_stats_page_counts_and_charts_each_task_and_keeps_them_after_a_restart(
    page: Page, world: World
) -> None:
    page.goto(f"{world.url}/stats")
    check_listing(page, world)
    charts = chart_axes(page, "fail_unless")
    assert charts["rate"]["labels"] == ["time (UTC)", "tasks/s", "failure %"]
    assert charts["runtime"]["labels"] == ["time (UTC)", "runtime (ms)"]
    assert all(charts["rate"]["ticked"]) and all(charts["runtime"]["ticked"]), charts
    assert charts["rate"]["finished"] >= 1  # at least one minute with a rate
    assert any(v.endswith("/s") for v in charts["legend"]), charts["legend"]
    assert any(v.endswith(" %") for v in charts["legend"]), charts["legend"]
    assert any(v.endswith(" ms") for v in charts["legend"]), charts["legend"]
    before = world.stats()

    assert world.dashboard.stop() == 0
    world.dashboard.start()
    after = world.stats()
    for name in world.ran:
        assert {k: after[name][k] for k in ("finished", "failed", "retried", "p50_ms")} == {
            k: before[name][k] for k in ("finished", "failed", "retried", "p50_ms")
        }
    page.goto(f"{world.url}/stats")
    check_listing(page, world)
    assert chart_axes(page, "add")["rate"]["finished"] >= 1  # the chart shows the past
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "dashboard-stats.png"), full_page=True)


def test_the_stats_api_gives_a_tasks_series_and_refuses_bad_times(world: World) -> None:
    since = time.time() - 3600
    response = world.get(f"/api/stats?task=fail_unless&since={since}&step=120")
    assert response.status_code == 200
    found = response.json()
    (task,) = found["tasks"]
    series = task["series"]
    assert found["step"] == 120 and len(series["time"]) >= 30
    assert sum(series["finished"]) == 6 and sum(series["failed"]) == 2
    assert task["retried"] == 0  # ops_app's tasks have no retry policy
    assert task["p95_ms"] >= task["p50_ms"] > 0
    idle = world.get("/api/stats?task=never-ran").json()["tasks"]
    assert [(t["task"], t["finished"], t["failure_pct"]) for t in idle] == [("never-ran", 0, None)]
    assert "series" not in world.get("/api/stats").json()["tasks"][0]
    assert world.get("/api/stats?since=yesterday").status_code == 400
    assert world.get(f"/api/stats?since={time.time() + 60}").status_code == 400
    assert world.get("/api/stats?since=-inf").status_code == 400
    assert world.get("/api/stats?step=soon").status_code == 400


def test_the_stats_page_fits_a_narrow_screen(page: Page, world: World) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{world.url}/stats")
    expect(page.locator('#task-stats tr[data-task="add"]')).to_be_visible(timeout=WAIT)
    expect(page.locator('section.task-stats[data-task="add"] canvas').first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"/stats scrolls sideways: {width} px"
    boxes = page.locator(".scroll, .uplot").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().right)")  # fmt: skip
    assert boxes and max(boxes) <= 390, boxes
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "dashboard-stats-narrow.png"), full_page=True)


def test_the_range_changes_the_charts_step_without_a_script_error(page: Page, world: World) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{world.url}/stats")
    section = page.locator('section.task-stats[data-task="add"]')
    expect(section.locator("figcaption").first).to_contain_text("per 1 min", timeout=WAIT)
    page.get_by_label("range").select_option("24h")
    expect(section.locator("figcaption").first).to_contain_text("per 4 min", timeout=WAIT)
    assert page.url.endswith("/stats?range=24h")
    expect(page.locator('#task-stats tr[data-task="add"] .finished')).to_have_text("5")
    assert chart_axes(page, "add")["rate"]["finished"] >= 1
    assert not errors, errors  # a script the page's CSP refused would show here
