"""Alert rules per queue and per task, silences, rules reloaded, and the webhooks' payloads
(pure parts: no broker, no HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taskq.dashboard import payloads
from taskq.dashboard.alerts import (
    Alert,
    Alerts,
    Backlog,
    DeadLetters,
    FailureRate,
    QueueReading,
    Reading,
    Transition,
    rule_id,
)
from taskq.dashboard.live import Live
from taskq.dashboard.settings import RulesFile, load_alerts
from taskq.dashboard.silences import Silences, keyed
from taskq.exceptions import ConfigurationError
from taskq.topology import Names

Counts = dict[tuple[str, str], tuple[int, int]]


def reading(at: float, failures: Counts | None = None, dead: int = 0) -> Reading:
    queues = {"default": QueueReading(0, 1, dead), "emails": QueueReading(0, 1, 0)}
    return Reading(at, queues, [], lambda window: dict(failures or {}))


def fired(alerts: Alerts, r: Reading) -> list[tuple[str, str]]:
    return sorted((t.status, t.alert.subject) for t in alerts.evaluate(r))


# -- failure rate per queue and per task -------------------------------------------------------

MIXED: Counts = {
    ("default", "fail"): (5, 5),
    ("default", "add"): (0, 5),
    ("emails", "send"): (1, 10),
}


def test_a_failure_rate_rule_of_one_task_counts_only_that_task() -> None:
    alerts = Alerts([FailureRate(percent=50, min_tasks=3, task="fail"),
                     FailureRate(percent=50, min_tasks=3, task="add")])  # fmt: skip
    assert fired(alerts, reading(1, MIXED)) == [("firing", "task=fail")]
    (alert,) = alerts.active()
    assert alert.message == "5 of 5 tasks of fail failed in the last 300 s (more than 50 %)"
    assert alert.key == f"{rule_id(alerts.rules[0])}:task=fail"


def test_star_counts_each_queue_or_task_on_its_own_and_none_counts_them_together() -> None:
    together = Alerts([FailureRate(percent=20, min_tasks=3)])
    assert fired(together, reading(1, MIXED)) == [("firing", "tasks")]  # 6 of 20 = 30 %
    per_queue = Alerts([FailureRate(percent=20, min_tasks=3, queue="*")])
    assert fired(per_queue, reading(1, MIXED)) == [("firing", "queue=default")]  # 5 of 10
    assert "in queue default" in per_queue.active()[0].message
    per_task = Alerts([FailureRate(percent=20, min_tasks=3, queue="default", task="*")])
    assert fired(per_task, reading(1, MIXED)) == [("firing", "queue=default task=fail")]
    one_queue = Alerts([FailureRate(percent=5, min_tasks=3, queue="emails")])
    assert fired(one_queue, reading(1, MIXED)) == [("firing", "queue=emails")]  # 1 of 10
    too_few = Alerts([FailureRate(percent=5, min_tasks=11, queue="emails")])
    assert fired(too_few, reading(1, MIXED)) == []


def test_the_live_picture_counts_failures_per_queue_and_task() -> None:
    live = Live(Names("p"), history_points=10)
    for at, kind, queue, task in [(10.0, "failed", "default", "fail"),
                                  (200.0, "succeeded", "default", "add"),
                                  (250.0, "failed", "emails", "fail"),
                                  (260.0, "failed", None, None)]:  # fmt: skip
        live.on_event({"type": f"task.{kind}", "time": at, "queue": queue, "task": task})
    assert live.failures(300.0, window=300.0) == {
        ("default", "fail"): (1, 1), ("default", "add"): (0, 1), ("emails", "fail"): (1, 1),
        ("", ""): (1, 1),
    }  # fmt: skip
    assert live.failures(300.0, window=60.0) == {("emails", "fail"): (1, 1), ("", ""): (1, 1)}
    assert live.failure_rate(300.0) == (3, 4)  # the overview's count, as before


def test_a_global_failure_rate_rule_keeps_its_key_from_before_queue_and_task() -> None:
    # A firing alert of a rule written before these fields survives the upgrade.
    assert FailureRate(percent=5).model_dump_json(exclude_none=True) == (
        '{"kind":"failure-rate","percent":5.0,"window":300.0,"min_tasks":10}'
    )


# -- rules reloaded ------------------------------------------------------------------------------


def test_a_reload_keeps_the_state_of_unchanged_rules_and_resolves_the_others() -> None:
    kept, dropped = DeadLetters(), FailureRate(percent=10, min_tasks=1)
    alerts = Alerts([kept, dropped])
    assert fired(alerts, reading(0, dead=1)) == []  # the baseline
    failing: Counts = {("default", "t"): (1, 1)}
    assert fired(alerts, reading(1, failing, dead=2)) == [("firing", "default"),
                                                         ("firing", "tasks")]  # fmt: skip
    since = alerts.active()[0].since
    added = Backlog(ready=5)
    gone = alerts.reload([added, kept], now=2)
    assert [(t.status, t.alert.subject) for t in gone] == [("resolved", "tasks")]
    assert fired(alerts, reading(3, failing, dead=2)) == []  # not sent again
    assert [(a.subject, a.since) for a in alerts.active()] == [("default", since)]


# -- silences ----------------------------------------------------------------------------------


def alert(key: str, message: str = "m") -> Alert:
    return Alert("backlog", key.split(":", 1)[1], message, 0.0, key)


def told(silences: Silences, firing: list[Alert], now: float) -> list[tuple[str, str]]:
    return [(t.status, t.alert.key) for t in silences.notifications(keyed(firing), now)]


def test_a_silenced_alert_is_sent_when_its_silence_ends_if_it_still_fires() -> None:
    silences = Silences()
    a = alert("backlog-1:default")
    silences.silence(a.key, until=100)
    assert silences.silenced(a.key, 50) == 100
    assert told(silences, [a], 50) == []  # fires while silenced: nothing sent
    assert told(silences, [a], 99) == []
    assert told(silences, [a], 100) == [("firing", a.key)]  # over: sent now
    assert told(silences, [a], 101) == []
    assert told(silences, [], 102) == [("resolved", a.key)]


def test_an_alert_that_fires_and_resolves_within_a_silence_is_never_sent() -> None:
    silences = Silences()
    a = alert("backlog-1:default")
    silences.silence("backlog-1", until=100)  # the rule: every alert of it
    assert silences.silenced(a.key, 0) == 100
    assert silences.silenced("backlog-10:default", 0) is None
    assert told(silences, [a], 10) == []
    assert told(silences, [], 20) == []
    assert told(silences, [], 200) == []


def test_a_resolution_during_a_silence_is_sent_when_it_ends() -> None:
    silences = Silences()
    a, b = alert("backlog-1:default"), alert("backlog-1:emails")
    assert told(silences, [a], 0) == [("firing", a.key)]
    silences.silence(a.key, until=100)
    assert told(silences, [b], 10) == [("firing", b.key)]  # not silenced: sent
    assert told(silences, [b], 100) == [("resolved", a.key)]
    silences.silence(b.key, until=300)
    silences.silence(b.key, until=150)  # shortened: the last word wins
    assert silences.active(120) == {b.key: 150}
    assert silences.active(150) == {}


def test_silences_and_what_was_sent_survive_a_restart_through_json() -> None:
    silences = Silences()
    a, b = alert("backlog-1:default"), alert("backlog-1:emails")
    told(silences, [a], 0)
    silences.silence(b.key, until=100)
    told(silences, [a, b], 1)
    again = Silences()
    again.restore(json.loads(json.dumps(silences.state())), keyed([a, b]))
    assert told(again, [a, b], 2) == []
    assert told(again, [a, b], 100) == [("firing", b.key)]
    older = Silences()  # a history file from before silences: what fired had been sent
    older.restore(None, keyed([a]))
    assert told(older, [a], 0) == []


# -- payloads ----------------------------------------------------------------------------------

FIRING = Transition("firing", Alert("failure-rate", "task=fail", "5 of 5 <tasks> failed", 60.0,
                                    "failure-rate-0a1b2c3d:task=fail"), 120.0)  # fmt: skip
RESOLVED = Transition("resolved", FIRING.alert, 180.0)


def test_the_generic_payload() -> None:
    assert payloads.generic(FIRING, "shop") == {
        "status": "firing",
        "alert": {"rule": "failure-rate", "subject": "task=fail",
                  "message": "5 of 5 <tasks> failed", "since": 60.0,
                  "key": "failure-rate-0a1b2c3d:task=fail"},
        "time": 120.0,
        "prefix": "shop",
    }  # fmt: skip


def test_the_slack_payload_escapes_its_control_characters() -> None:
    assert payloads.slack(FIRING, "shop") == {
        "text": "[FIRING] taskq shop: failure-rate task=fail: 5 of 5 &lt;tasks&gt; failed",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text":
                "*FIRING* `failure-rate` task=fail\n5 of 5 &lt;tasks&gt; failed"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                "prefix `shop` · since 1970-01-01T00:01:00+00:00 · key "
                "`failure-rate-0a1b2c3d:task=fail`"}]},
        ],
    }  # fmt: skip
    assert payloads.slack(RESOLVED, "shop")["text"].startswith("[RESOLVED] taskq shop:")


def test_the_pagerduty_events_resolve_what_they_triggered() -> None:
    trigger = payloads.pagerduty(FIRING, "shop", "R0UTING", "warning", "host-1")
    assert trigger == {
        "routing_key": "R0UTING",
        "dedup_key": "taskq/shop/failure-rate-0a1b2c3d:task=fail",
        "event_action": "trigger",
        "payload": {
            "summary": "taskq shop: 5 of 5 <tasks> failed",
            "severity": "warning",
            "source": "host-1",
            "timestamp": "1970-01-01T00:02:00+00:00",
            "component": "task=fail",
            "group": "shop",
            "class": "failure-rate",
            "custom_details": {"rule": "failure-rate", "subject": "task=fail",
                               "message": "5 of 5 <tasks> failed",
                               "since": "1970-01-01T00:01:00+00:00",
                               "key": "failure-rate-0a1b2c3d:task=fail"},
        },
    }  # fmt: skip
    resolve = payloads.pagerduty(RESOLVED, "shop", "R0UTING", "warning", "host-1")
    assert resolve == {"routing_key": "R0UTING", "dedup_key": trigger["dedup_key"],
                       "event_action": "resolve"}  # fmt: skip
    long = Transition("firing", Alert("r", "s" * 300, "m", 0.0, "r-1:" + "s" * 300), 0.0)
    assert len(payloads.dedup_key(long, "shop")) <= payloads.DEDUP_LIMIT


# -- settings ----------------------------------------------------------------------------------


def test_webhooks_of_each_format_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('webhook = "http://127.0.0.1:1/generic"\n'
                    '[[webhooks]]\nurl = "http://127.0.0.1:1/slack"\nformat = "slack"\n'
                    '[[webhooks]]\nurl = "http://127.0.0.1:1/pd"\nformat = "pagerduty"\n'
                    'routing_key = "k3y"\nseverity = "critical"\n')  # fmt: skip
    targets = load_alerts(path, [], None).targets()
    assert [(t.format, t.url) for t in targets] == [
        ("generic", "http://127.0.0.1:1/generic"), ("slack", "http://127.0.0.1:1/slack"),
        ("pagerduty", "http://127.0.0.1:1/pd"),
    ]  # fmt: skip
    assert targets[2].routing_key is not None
    assert targets[2].routing_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(targets[2])
    path.write_text('[[webhooks]]\nurl = "http://h/pd"\nformat = "pagerduty"\n'
                    'severity = "loud-s3cret"\n')  # fmt: skip
    with pytest.raises(ConfigurationError) as refused:
        load_alerts(path, [], None)
    assert "routing_key" in str(refused.value) or "severity" in str(refused.value)
    assert "s3cret" not in str(refused.value)  # the values given are never echoed


def test_a_rules_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('[[rule]]\nkind = "backlog"\nready = 5\n')
    watched = RulesFile(path, extra=(DeadLetters(),))
    assert not watched.changed()
    path.write_text('[[rule]]\nkind = "backlog"\nready = 50\n')
    os.utime(path, ns=(1, 1))  # whatever the clock's resolution
    assert watched.changed() and not watched.changed()
    assert watched.rules() == [Backlog(ready=50), DeadLetters()]
    path.write_text("[[rule]]\nkind = 'backlog'\n")
    assert watched.changed()
    with pytest.raises(ConfigurationError, match="ready"):
        watched.rules()
    path.unlink()
    assert watched.changed()
    with pytest.raises(ConfigurationError, match="cannot read"):
        watched.rules()


def test_a_broken_rules_file_keeps_the_rules_in_force_and_says_why(tmp_path: Path) -> None:
    from taskq.dashboard.alerting import Alerting, UnknownAlert
    from taskq.dashboard.settings import DashboardSettings

    path = tmp_path / "alerts.toml"
    path.write_text('[[rule]]\nkind = "backlog"\nready = 5\n')
    settings = DashboardSettings(alerts=load_alerts(path, [], None), alerts_file=path)
    alerting = Alerting(settings, "p")
    assert alerting.read_rules() is None  # unchanged
    path.write_text('[[rule]]\nkind = "backlog"\n')
    read = alerting.read_rules()
    assert isinstance(read, str)
    alerting.use_rules(read, now=1)
    assert alerting.rules_error is not None and "ready" in alerting.rules_error
    assert alerting.alerts.rules == [Backlog(ready=5)]
    path.write_text('[[rule]]\nkind = "backlog"\nready = 7\n')
    read = alerting.read_rules()
    assert isinstance(read, list)
    alerting.use_rules(read, now=2)
    assert alerting.rules_error is None
    assert alerting.alerts.rules == [Backlog(ready=7)]

    ((rule, _),) = alerting.alerts.rule_ids()
    with pytest.raises(UnknownAlert):
        alerting.silence("backlog-00000000", 5, now=0)
    with pytest.raises(ValueError, match="minutes"):
        alerting.silence(rule, -1, now=0)
    assert alerting.silence(f"{rule}:emails", 5, now=0) == 300.0
    assert alerting.view(1)["silences"] == [{"key": f"{rule}:emails", "until": 300.0}]
