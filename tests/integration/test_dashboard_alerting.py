"""Alert rules of one queue or task, silences, webhooks of each format and rules reloaded
from their file, against a real ``taskq dashboard`` subprocess and a real ``taskq-worker
--events``, in Chromium and through the API.

The dashboard's rules come from a TOML file (edited by the tests while it runs) and a flag
(``--alert-dead-letters``); its webhooks are three local receivers on 127.0.0.1, one per
format (generic, Slack, PagerDuty).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from taskq import App, TaskFailed
from taskq.sync import SyncClient
from tests import dashboard_support
from tests.dashboard_support import (
    DashboardProcess,
    OperatorApi,
    WebhookReceiver,
    free_port,
    until,
)
from tests.support import BROKER, WorkerProcess, delete_topology, unique_prefix

pytestmark = pytest.mark.one_queue_only
browser = dashboard_support.browser  # fixtures: Chromium, and a page logged in
page = dashboard_support.page

APP = "tests.apps.ops_app:app"
TOKEN = "t0ken-" + uuid.uuid4().hex
VIEWER = "v1ewer-" + uuid.uuid4().hex
ROUTING_KEY = "r0uting-" + uuid.uuid4().hex[:8]
RULES = """
[[rule]]
kind = "failure-rate"
task = "fail"
percent = 50
window = 20
min_tasks = 3

[[rule]]
kind = "failure-rate"
task = "add"
percent = 50
window = 20
min_tasks = 3
"""


@dataclasses.dataclass
class World(OperatorApi):
    prefix: str
    rules: Path
    webhooks: str
    dashboard: DashboardProcess
    worker: WorkerProcess
    generic: WebhookReceiver
    slack: WebhookReceiver
    pagerduty: WebhookReceiver
    client: SyncClient

    token: str = TOKEN

    def write_rules(self, rules: str) -> None:
        self.rules.write_text(self.webhooks + rules)

    def alerts(self, subject: str | None = None, rule: str | None = None) -> list[dict[str, Any]]:
        return [
            a for a in self.api("/api/alerts")["alerts"]
            if (subject is None or a["subject"] == subject) and (rule is None or a["rule"] == rule)
        ]  # fmt: skip

    def rule_id(self, kind: str, **settings: Any) -> str:
        for rule in self.api("/api/alerts")["rules"]:
            if rule["kind"] == kind and all(rule.get(k) == v for k, v in settings.items()):
                return str(rule["id"])
        raise AssertionError(f"no {kind} rule with {settings}")

    def readings_after(self, count: int = 3) -> None:
        """Wait until the dashboard took ``count`` more readings (0.5 s apart)."""
        moment = self.api("/api/overview")["time"]
        until(lambda: self.api("/api/overview")["time"] > moment + count * 0.5,
              what="more readings")  # fmt: skip

    def fail(self, count: int) -> None:
        handles = [self.client.send("fail", f"failure {n}") for n in range(count)]
        for handle in handles:
            with pytest.raises(TaskFailed):
                handle.result(timeout=30)

    def purge(self, *, told: bool = True) -> None:
        """Purge the dead letters; wait until no dead-letters alert fires and (``told``) the
        webhook heard every resolution, so that a test's count of what was sent starts clean
        whichever test ran before (they share the dashboard and its alerts' keys)."""
        assert self.post("/api/queues/default/dead/purge", {"confirm": "default"}).is_success
        until(lambda: not self.alerts(rule="dead-letters"), what="no dead-letters alert")
        if told:
            until(self._all_resolved_told, what="the webhook told of every resolution")

    def _all_resolved_told(self) -> bool:
        last = {b["alert"]["key"]: b["status"] for b in list(self.generic.received)}
        rule = self.rule_id("dead-letters")
        return all(status == "resolved" for key, status in last.items() if key.startswith(rule))


def sent(receiver: WebhookReceiver, status: str, key: str, since: int = 0) -> list[dict[str, Any]]:
    """The generic bodies received for alert ``key`` with ``status`` (from the ``since``th)."""
    return [b for b in list(receiver.received)[since:]
            if b["status"] == status and b["alert"]["key"] == key]  # fmt: skip


def events(receiver: WebhookReceiver, dedup_key: str, action: str, since: int = 0
           ) -> list[dict[str, Any]]:  # fmt: skip
    """The PagerDuty events received for ``dedup_key`` with ``action`` (from the ``since``th)."""
    return [b for b in list(receiver.received)[since:]
            if b["dedup_key"] == dedup_key and b["event_action"] == action]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    prefix, state = unique_prefix(), tmp_path_factory.mktemp("dashboard-alerting")
    generic, slack, pagerduty = WebhookReceiver(), WebhookReceiver(), WebhookReceiver()
    webhooks = (
        f'webhook = "{generic.url}"\n'
        f'[[webhooks]]\nurl = "{slack.url}"\nformat = "slack"\n'
        f'[[webhooks]]\nurl = "{pagerduty.url}"\nformat = "pagerduty"\n'
        f'routing_key = "{ROUTING_KEY}"\nseverity = "warning"\n'
    )
    rules = state / "alerts.toml"
    rules.write_text(webhooks + RULES)
    worker = WorkerProcess(APP, prefix, "--name", "w-alerts", "--events")
    dashboard = DashboardProcess(
        APP, prefix, state, "--token", TOKEN, "--viewer-token", VIEWER,
        "--history", str(state / "history.sqlite3"), "--port", str(free_port()),
        "--sample-interval", "0.5", "--alerts", str(rules), "--alert-dead-letters",
    )  # fmt: skip
    client = App("alerting-client", broker=BROKER, prefix=prefix, events=True).sync
    try:
        until(lambda: "consuming" in worker.output(), timeout=30, what="the worker")
        dashboard.start()
        yield World(prefix, rules, webhooks, dashboard, worker, generic, slack, pagerduty,
                    client)  # fmt: skip
    finally:
        client.close()
        dashboard.kill()
        worker.kill()
        for receiver in (generic, slack, pagerduty):
            receiver.close()
        asyncio.run(delete_topology(prefix, ["default"]))


def test_a_failure_rate_rule_of_one_task_fires_and_that_of_another_does_not(
    page: Page, world: World
) -> None:
    world.write_rules(RULES)
    until(lambda: not world.alerts("task=fail"), timeout=60, what="no alert of fail yet")
    marks = [len(r.received) for r in (world.generic, world.slack, world.pagerduty)]
    adds = [world.client.send("add", n, 1) for n in range(4)]
    world.fail(4)
    assert [h.result(timeout=30) for h in adds] == [1, 2, 3, 4]

    (alert,) = until(lambda: world.alerts("task=fail"), what="the failure-rate alert of fail")
    page.goto(f"{world.url}/")
    expect(page.locator(f'li.alert[data-key="{alert["key"]}"]')).to_contain_text(
        "tasks of fail failed"
    )
    assert alert["rule"] == "failure-rate"
    assert "tasks of fail failed in the last 20 s (more than 50 %)" in alert["message"]
    assert alert["key"] == f"{world.rule_id('failure-rate', task='fail')}:task=fail"

    def seen(task_id: str) -> bool:
        response = world.get(f"/api/tasks/{task_id}")  # 404 until the dashboard has seen it
        return response.status_code == 200 and response.json()["state"] == "SUCCESS"

    until(lambda: all(seen(h.id) for h in adds), what="the add tasks in the history")
    world.readings_after()
    assert world.alerts("task=add") == []
    assert not [b for b in world.generic.received if b["alert"]["subject"] == "task=add"]

    # Slack and PagerDuty hear of it in their own shapes; PagerDuty resolves what it opened.
    until(lambda: sent(world.generic, "firing", alert["key"], marks[0]), what="the webhook")

    def slack_messages() -> list[dict[str, Any]]:
        return [b for b in list(world.slack.received)[marks[1]:]
                if alert["key"] in b["blocks"][1]["elements"][0]["text"]]  # fmt: skip

    slack = until(slack_messages, what="the Slack message")
    assert slack[0]["text"].startswith(f"[FIRING] taskq {world.prefix}: failure-rate task=fail: ")
    assert [block["type"] for block in slack[0]["blocks"]] == ["section", "context"]
    assert slack[0]["blocks"][0]["text"]["type"] == "mrkdwn"
    dedup = f"taskq/{world.prefix}/{alert['key']}"
    (trigger,) = until(lambda: events(world.pagerduty, dedup, "trigger", marks[2]),
                       what="the PagerDuty trigger")  # fmt: skip
    assert trigger["routing_key"] == ROUTING_KEY and trigger["event_action"] == "trigger"
    assert sorted(trigger) == ["dedup_key", "event_action", "payload", "routing_key"]
    details = trigger["payload"]
    assert (details["severity"], details["source"], details["class"], details["component"]) == (
        "warning", socket.gethostname(), "failure-rate", "task=fail")  # fmt: skip
    assert details["summary"].startswith(f"taskq {world.prefix}: ")

    # The window is 20 s: with no more failures, the alert resolves.
    resolve = until(lambda: events(world.pagerduty, dedup, "resolve", marks[2]), timeout=60,
                    what="the PagerDuty resolve")  # fmt: skip
    assert resolve == [{"routing_key": ROUTING_KEY, "dedup_key": dedup, "event_action": "resolve"}]
    until(lambda: [m for m in slack_messages() if m["text"].startswith("[RESOLVED]")],
          what="the Slack resolution")  # fmt: skip
    until(lambda: sent(world.generic, "resolved", alert["key"], marks[0]), what="the resolution")


def test_a_silenced_alert_is_not_sent_until_its_silence_ends(
    browser: Browser, page: Page, world: World
) -> None:
    world.purge()
    mark = len(world.generic.received)
    rule = world.rule_id("dead-letters")
    refused = world.post("/api/alerts/silence", {"key": rule, "minutes": 60}, token=VIEWER)
    assert refused.status_code == 403
    assert world.post("/api/alerts/silence", {"key": "nope-1", "minutes": 60}).status_code == 404
    assert world.post("/api/alerts/silence", {"key": rule, "minutes": -1}).status_code == 400
    done = world.post("/api/alerts/silence", {"key": rule, "minutes": 60})
    assert done.status_code == 200 and done.json()["key"] == rule
    until_time = done.json()["until"]

    world.fail(1)  # a dead letter: the dead-letters alert fires, silenced
    (alert,) = until(lambda: world.alerts(rule="dead-letters"), what="the dead-letters alert")
    key = alert["key"]
    assert alert["silenced_until"] == until_time
    page.goto(f"{world.url}/")
    row = page.locator(f'li.alert[data-key="{key}"]')
    expect(row.locator(".silenced-until")).to_contain_text("silenced until")
    world.readings_after()
    assert sent(world.generic, "firing", key, mark) == []

    # The page lifts the rule's silence: the alert, still firing, is sent now.
    page.locator(f'ul.silences li[data-key="{rule}"] button').click()
    expect(page.locator(".notice")).to_contain_text(f"{rule}: silence lifted")
    until(lambda: sent(world.generic, "firing", key, mark), what="the alert at the webhook")

    # The page silences the alert itself; a viewer sees it, with no form to act.
    row.locator("input[name=minutes]").fill("30")
    row.locator("button.silence").click()
    expect(page.locator(".notice")).to_contain_text(f"{key} silenced until")
    expect(row.locator(".silenced-until")).to_contain_text("silenced until")
    viewer = browser.new_context()
    try:
        seen = viewer.new_page()
        seen.goto(f"{world.url}/?token={VIEWER}")
        expect(seen.locator(f'li.alert[data-key="{key}"]')).to_contain_text("silenced until")
        expect(seen.locator("form.silence")).to_have_count(0)
    finally:
        viewer.close()

    # The silence survives a restart; a resolution while silenced is held back till its end.
    assert world.dashboard.stop() == 0
    world.dashboard.start()
    (alert,) = world.alerts(rule="dead-letters")
    assert alert["silenced_until"] is not None
    assert [s["key"] for s in world.api("/api/alerts")["silences"]] == [key]
    world.purge(told=False)  # held back by the silence
    world.readings_after()
    assert sent(world.generic, "resolved", key, mark) == []
    assert world.post("/api/alerts/silence", {"key": key, "minutes": 0}).is_success
    until(lambda: sent(world.generic, "resolved", key, mark), what="the held-back resolution")
    assert len(sent(world.generic, "firing", key, mark)) == 1


def test_the_rules_file_is_reloaded_while_the_dashboard_runs(page: Page, world: World) -> None:
    world.write_rules(RULES)
    world.fail(1)
    added = '\n[[rule]]\nkind = "failure-rate"\ntask = "fail"\npercent = 1.5\nmin_tasks = 1\n'
    world.write_rules(RULES + added)
    rule = until(lambda: [r["id"] for r in world.api("/api/alerts")["rules"]
                          if r.get("percent") == 1.5], what="the new rule")[0]  # fmt: skip
    (alert,) = until(lambda: [a for a in world.alerts() if a["key"].startswith(rule)],
                     what="the new rule's alert")  # fmt: skip
    until(lambda: sent(world.generic, "firing", alert["key"]), what="its webhook")

    world.rules.write_text(world.webhooks + '[[rule]]\nkind = "backlog"\n')  # no `ready`
    error = until(lambda: world.api("/api/alerts")["rules_error"], what="the file's error")
    assert "invalid alert rules" in error and "ready" in error
    assert "rules in force are those read before" in error
    page.goto(f"{world.url}/")
    expect(page.locator(".rules-error")).to_contain_text("invalid alert rules")
    assert "not reloaded" in world.dashboard.output()
    assert [a["since"] for a in world.alerts() if a["key"] == alert["key"]] == [alert["since"]]

    other = '\n[[rule]]\nkind = "no-consumer"\nqueue = "nowhere"\n'
    world.write_rules(RULES + added + other)
    until(lambda: world.api("/api/alerts")["rules_error"] is None, what="the error to clear")
    kinds = [r["kind"] for r in world.api("/api/alerts")["rules"]]
    assert kinds == ["failure-rate"] * 3 + ["no-consumer", "dead-letters"]  # the flag's last
    assert [a["since"] for a in world.alerts() if a["key"] == alert["key"]] == [alert["since"]]
    world.readings_after()
    assert len(sent(world.generic, "firing", alert["key"])) == 1  # kept, not sent again

    world.write_rules(RULES)
    until(lambda: sent(world.generic, "resolved", alert["key"]), what="the removed rule's end")
    assert not [a for a in world.alerts() if a["key"] == alert["key"]]
