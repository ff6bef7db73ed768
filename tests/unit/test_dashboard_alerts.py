"""Alert rules (pure): when each fires and resolves, and how rules are configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskq.dashboard.alerts import (
    Alerts,
    Backlog,
    DeadLetters,
    FailureRate,
    NoConsumer,
    QueueReading,
    Reading,
    WorkerMissing,
)
from taskq.dashboard.settings import check_exposure, is_loopback, load_alerts
from taskq.exceptions import ConfigurationError


def reading(
    at: float,
    ready: int = 0,
    consumers: int = 1,
    dead: int | None = 0,
    missing: tuple[str, ...] = (),
    failed: int = 0,
    finished: int = 0,
) -> Reading:
    queues = {"default": QueueReading(ready, consumers, dead)}
    return Reading(at, queues, list(missing), lambda window: {("default", "t"): (failed, finished)})


def statuses(alerts: Alerts, r: Reading) -> list[tuple[str, str, str]]:
    return [(t.status, t.alert.rule, t.alert.subject) for t in alerts.evaluate(r)]


def test_backlog_fires_only_after_holding_for_its_duration_and_resolves() -> None:
    alerts = Alerts([Backlog(ready=10, for_=30)])
    assert statuses(alerts, reading(0, ready=50)) == []
    assert statuses(alerts, reading(29, ready=50)) == []
    assert statuses(alerts, reading(30, ready=50)) == [("firing", "backlog", "default")]
    assert alerts.active()[0].since == 0
    assert statuses(alerts, reading(31, ready=50)) == []  # fires once
    assert statuses(alerts, reading(32, ready=5)) == [("resolved", "backlog", "default")]
    assert statuses(alerts, reading(33, ready=50)) == []  # the clock starts again


def test_dead_letters_fire_on_growth_and_resolve_when_brought_back_down() -> None:
    alerts = Alerts([DeadLetters()])
    assert statuses(alerts, reading(0, dead=4)) == []  # the baseline
    assert statuses(alerts, reading(1, dead=5)) == [("firing", "dead-letters", "default")]
    assert "1 new dead letter(s)" in alerts.active()[0].message
    assert statuses(alerts, reading(2, dead=7)) == []
    assert statuses(alerts, reading(3, dead=0)) == [("resolved", "dead-letters", "default")]
    assert statuses(alerts, reading(4, dead=1)) == [("firing", "dead-letters", "default")]


def test_no_consumer_failure_rate_and_missing_workers() -> None:
    alerts = Alerts([NoConsumer(for_=0), FailureRate(percent=10, min_tasks=5), WorkerMissing()])
    assert statuses(alerts, reading(0, ready=0, consumers=0, failed=1, finished=4)) == []
    fired = statuses(alerts, reading(1, ready=3, consumers=0, failed=2, finished=10,
                                     missing=("w1",)))  # fmt: skip
    assert sorted(fired) == [("firing", "failure-rate", "tasks"),
                             ("firing", "no-consumer", "default"),
                             ("firing", "worker-missing", "w1")]  # fmt: skip
    resolved = statuses(alerts, reading(2, ready=3, consumers=1, failed=1, finished=10))
    assert sorted(resolved) == [("resolved", "failure-rate", "tasks"),
                                ("resolved", "no-consumer", "default"),
                                ("resolved", "worker-missing", "w1")]  # fmt: skip


def test_rules_from_a_toml_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text('webhook = "http://127.0.0.1:1/x"\n[[rule]]\nkind = "backlog"\n'
                    'queue = "emails"\nready = 100\nfor = 5\n')  # fmt: skip
    loaded = load_alerts(path, [{"kind": "worker-missing"}], None)
    assert loaded.webhook is not None and loaded.webhook.url == "http://127.0.0.1:1/x"
    assert loaded.rules == [Backlog(queue="emails", ready=100, for_=5), WorkerMissing()]
    flagged = load_alerts(None, [], "http://h/y").webhook
    assert flagged is not None and flagged.url == "http://h/y"
    path.write_text('[[rule]]\nkind = "backlog"\nready = 1\nfour = 5\n')
    with pytest.raises(ConfigurationError, match="four"):
        load_alerts(path, [], None)
    with pytest.raises(ConfigurationError, match="kind"):
        load_alerts(None, [{"kind": "nonsense"}], None)


def test_only_loopback_listens_without_a_token() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "example.com", "::"]))
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "secret")
    with pytest.raises(ConfigurationError, match="without --token"):
        check_exposure("0.0.0.0", None)


def test_alert_state_survives_a_restart_through_json() -> None:
    import json

    rules = [DeadLetters(), Backlog(ready=10, for_=30)]
    before = Alerts(rules)
    assert statuses(before, reading(0, dead=4, ready=50)) == []  # the baseline: 4
    assert statuses(before, reading(1, dead=6, ready=50)) == [("firing", "dead-letters", "default")]
    state = json.loads(json.dumps(before.state()))

    after = Alerts([Backlog(ready=10, for_=30), DeadLetters(), NoConsumer()])  # a rule added
    after.restore(state)
    assert [a.rule for a in after.active()] == ["dead-letters"]
    assert statuses(after, reading(2, dead=6, ready=50)) == []  # not sent again, baseline kept
    assert statuses(after, reading(30, dead=6, ready=50)) == [("firing", "backlog", "default")]
    resolved = statuses(after, reading(31, dead=0, ready=50))
    assert resolved == [("resolved", "dead-letters", "default")]

    dropped = Alerts([Backlog(ready=99)])  # the rule of a firing alert is gone: forgotten
    dropped.restore(state)
    assert dropped.active() == []


def test_a_firing_alert_shows_the_current_values() -> None:
    alerts = Alerts([DeadLetters()])
    assert statuses(alerts, reading(0, dead=4)) == []
    assert statuses(alerts, reading(1, dead=5)) == [("firing", "dead-letters", "default")]
    assert statuses(alerts, reading(2, dead=9)) == []  # still the one alert, sent once
    (alert,) = alerts.active()
    assert (alert.message, alert.since) == ("5 new dead letter(s) in default (9 in all)", 1)


def test_a_viewer_token_needs_a_different_operator_token() -> None:
    from taskq.dashboard.settings import DashboardSettings

    with pytest.raises(ConfigurationError, match="viewer-token needs --token"):
        DashboardSettings(viewer_token="v")
    with pytest.raises(ConfigurationError, match="viewer-token needs --token"):
        DashboardSettings(token="same", viewer_token="same")
    assert DashboardSettings(token="op", viewer_token="v").viewer_token == "v"
