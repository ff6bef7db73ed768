"""The doctor's checks are pure: each is fed the management API's shapes (as RabbitMQ 3.10
answers) and must find the problem staged in them, and stay quiet on a healthy broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskq import App
from taskq.doctor import Expected, Snapshot, Status, diagnose, exit_code, expected_of
from taskq.doctor.broker_checks import leader_limit, parse_version
from taskq.doctor.fetch import api_candidates, parse_eval
from taskq.doctor.findings import fail, ok, warn
from taskq.doctor.queue_checks import argument_differences, suggested_timeout_ms
from taskq.doctor.snapshot import ConsumerTimeouts, DeadSamples, Depth

NODES = ["taskq1@localhost", "taskq2@localhost", "taskq3@localhost"]


def make_app(**settings: Any) -> App:
    app = App("doc", broker="amqp://u:s3cret@127.0.0.1:6701/", prefix="pp", **settings)

    @app.task(timeout=60)
    def short() -> None: ...

    @app.task(queue="long", timeout=7200)
    def long() -> None: ...

    return app


def node(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "running": True,
        "partitions": [],
        "mem_alarm": False,
        "disk_free_alarm": False,
        "mem_used": 2**27,
        "mem_limit": 2**30,
        "disk_free": 2**34,
        "disk_free_limit": 2**25,
        **fields,
    }


def queue(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "classic",
        "node": NODES[0],
        "arguments": {},
        "messages": 0,
        "messages_ready": 0,
        "consumers": 0,
        **fields,
    }


def healthy_queues(expected: Expected) -> list[dict[str, Any]]:
    rows = []
    for name, args in expected.arguments.items():
        kind = args.get("x-queue-type", "classic")
        rows.append(
            queue(
                name,
                type=kind,
                arguments={k: v for k, v in args.items()},
                leader=NODES[len(rows) % 3] if kind == "quorum" else None,
                consumers=1 if expected.is_work_queue(name) else 0,
            )
        )
    return rows


def snapshot(expected: Expected, **fields: Any) -> Snapshot:
    base: dict[str, Any] = {
        "broker": "amqp://u:***@127.0.0.1:6701/",
        "server": {"product": "RabbitMQ", "version": "3.13.1"},
        "api_base": "http://127.0.0.1:16701",
        "overview": {"rabbitmq_version": "3.13.1", "erlang_version": "26.2", "node": NODES[0]},
        "feature_flags": [{"name": "quorum_queue", "state": "enabled", "stability": "stable"}],
        "nodes": [node(n) for n in NODES],
        "queues": healthy_queues(expected),
        "consumer_timeouts": ConsumerTimeouts(dict.fromkeys(NODES, 7_300_000), "rabbitmqctl"),
    }
    return Snapshot(**{**base, **fields})


def by_check(findings: list[Any], check: str) -> list[Any]:
    return [f for f in findings if f.check == check]


@pytest.fixture
def expected() -> Expected:
    return expected_of(make_app(queue_type="quorum"))


def test_a_healthy_cluster_is_all_ok(expected: Expected) -> None:
    findings = diagnose(snapshot(expected), expected)
    assert [f for f in findings if f.status is not Status.OK] == []
    checks = {f.check for f in findings}
    assert checks == {
        "amqp",
        "management-api",
        "version",
        "feature-flags",
        "cluster",
        "alarms",
        "quorum-leaders",
        "queue-arguments",
        "consumer-timeout",
        "unconsumed-queues",
        "dead-letters",
        "unheld-delays",
    }
    assert exit_code(findings) == 0


def test_old_version_and_disabled_stable_flags_warn(expected: Expected) -> None:
    flags = [
        {"name": "stream_queue", "state": "disabled", "stability": "stable"},
        {"name": "khepri_db", "state": "disabled", "stability": "experimental"},
    ]
    overview = {"rabbitmq_version": "3.10.8", "node": NODES[0]}
    findings = diagnose(snapshot(expected, overview=overview, feature_flags=flags), expected)
    (version,) = by_check(findings, "version")
    assert version.status is Status.WARN and "older than 3.12" in version.detail
    (flag,) = by_check(findings, "feature-flags")
    assert flag.status is Status.WARN and flag.data["disabled"] == ["stream_queue"]
    assert "enable_feature_flag all" in flag.detail
    assert exit_code(findings) == 0 and exit_code(findings, strict=True) == 1


def test_version_comes_from_the_handshake_without_the_api() -> None:
    assert parse_version("4.0.0-rc.1") == (4, 0, 0)
    snap = Snapshot(broker="b", server={"version": b"3.10.8"}, api_error="refused")
    exp = expected_of(make_app())
    (version,) = by_check(diagnose(snap, exp), "version")
    assert version.data["rabbitmq"] == "3.10.8" and version.status is Status.WARN


def test_stopped_member_and_partitions_fail(expected: Expected) -> None:
    nodes = [node(NODES[0], partitions=[NODES[1]]), node(NODES[1]), node(NODES[2], running=False)]
    findings = diagnose(snapshot(expected, nodes=nodes), expected)
    cluster = by_check(findings, "cluster")
    assert {(f.status, f.data["node"]) for f in cluster} == {
        (Status.FAIL, NODES[0]),
        (Status.FAIL, NODES[2]),
    }
    assert any("partitioned from taskq2@localhost" in f.detail for f in cluster)
    assert any("not running" in f.detail and "start_app" in f.detail for f in cluster)
    assert exit_code(findings) == 1


def test_memory_and_disk_alarms_fail(expected: Expected) -> None:
    nodes = [node(NODES[0], mem_alarm=True), node(NODES[1], disk_free_alarm=True), node(NODES[2])]
    alarms = by_check(diagnose(snapshot(expected, nodes=nodes), expected), "alarms")
    assert [(f.status, f.data["node"]) for f in alarms] == [
        (Status.FAIL, NODES[0]),
        (Status.FAIL, NODES[1]),
    ]
    assert "memory alarm" in alarms[0].detail and alarms[0].data["mem_limit"] == 2**30
    assert "disk alarm" in alarms[1].detail and "disk_free_limit" in alarms[1].data


def test_leaders_all_on_one_node_warn_and_a_leaderless_queue_fails(expected: Expected) -> None:
    rows = healthy_queues(expected)
    quorum = [r for r in rows if r["type"] == "quorum"]
    assert len(quorum) == 141  # 2 work queues, their dead and hold queues, 135 delay queues
    for row in quorum:
        row["leader"] = NODES[0]
    quorum[0]["leader"] = NODES[2] + "-gone"
    findings = by_check(diagnose(snapshot(expected, queues=rows), expected), "quorum-leaders")
    statuses = sorted(f.status for f in findings)
    assert statuses == [Status.FAIL, Status.WARN]
    heavy = next(f for f in findings if f.status is Status.WARN)
    assert heavy.data["leaders"] == {NODES[0]: 140, NODES[1]: 0, NODES[2]: 0}
    assert heavy.data["limit"] == leader_limit(141, 3)
    assert "rabbitmq-queues rebalance quorum" in heavy.detail


def test_leaders_ignore_other_prefixes_and_a_stopped_node(expected: Expected) -> None:
    rows = healthy_queues(expected) + [queue("other.q.x", type="quorum", leader=NODES[0])] * 50
    nodes = [node(n) for n in NODES[:2]] + [node(NODES[2], running=False)]
    mine = [r for r in rows if r["name"].startswith("pp.") and r["type"] == "quorum"]
    for i, row in enumerate(mine):
        row["leader"] = NODES[i % 2]
    (found,) = by_check(
        diagnose(snapshot(expected, queues=rows, nodes=nodes), expected), "quorum-leaders"
    )
    assert found.status is Status.OK and found.data["leaders"] == {NODES[0]: 71, NODES[1]: 70}


def test_drifted_arguments_fail_with_both_values() -> None:
    expected = expected_of(make_app())  # classic work queues, x-max-priority 10
    rows = healthy_queues(expected)
    work = next(r for r in rows if r["name"] == "pp.q.default")
    work["arguments"] = {**work["arguments"], "x-max-priority": 5, "x-max-length": 100}
    dead = next(r for r in rows if r["name"] == "pp.q.long.dead")
    dead["type"] = "quorum"
    findings = by_check(diagnose(snapshot(expected, queues=rows), expected), "queue-arguments")
    assert {f.data["queue"] for f in findings} == {"pp.q.default", "pp.q.long.dead"}
    assert all(f.status is Status.FAIL for f in findings)
    default = next(f for f in findings if f.data["queue"] == "pp.q.default")
    assert default.data["differences"] == {
        "x-max-length": {"app": None, "broker": 100},
        "x-max-priority": {"app": 10, "broker": 5},
    }
    assert "x-max-priority: App declares 10, broker has 5" in default.detail


def test_classic_queue_without_a_type_argument_is_no_drift() -> None:
    row = queue("pp.q.x.dead", arguments={})
    assert argument_differences({"x-queue-type": "classic"}, row) == {}
    placement = queue(
        "q",
        type="quorum",
        arguments={"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"},
    )
    assert argument_differences({"x-queue-type": "quorum"}, placement) == {}


def test_refusals_over_amqp_are_drift_too() -> None:
    expected = expected_of(make_app())
    refusal = "inequivalent arg 'x-max-priority' ... received '10' but current is '5'"
    snap = Snapshot(broker="b", api_error="refused", refusals={"pp.q.default": refusal})
    (found,) = by_check(diagnose(snap, expected), "queue-arguments")
    assert found.status is Status.FAIL and refusal in found.detail


def test_task_timeouts_against_consumer_timeout(expected: Expected) -> None:
    timeouts = ConsumerTimeouts({NODES[0]: 1_800_000, NODES[1]: 1000, NODES[2]: None}, "ctl")
    findings = by_check(
        diagnose(snapshot(expected, consumer_timeouts=timeouts), expected), "consumer-timeout"
    )
    assert {(f.data["task"], f.status) for f in findings} == {
        ("short", Status.FAIL),
        ("long", Status.FAIL),
    }
    long = next(f for f in findings if f.data["task"] == "long")
    assert long.data["consumer_timeout_ms"] == 1000 and NODES[1] in long.detail
    assert long.data["suggested_ms"] == suggested_timeout_ms(7200) == 7_260_000
    assert "consumer_timeout = 7260000" in long.detail


def test_a_per_queue_consumer_timeout_wins(expected: Expected) -> None:
    rows = healthy_queues(expected)
    next(r for r in rows if r["name"] == "pp.q.long")["effective_policy_definition"] = {
        "consumer-timeout": 8_000_000
    }
    timeouts = ConsumerTimeouts(dict.fromkeys(NODES, 1_800_000), "rabbitmqctl")
    snap = snapshot(expected, queues=rows, consumer_timeouts=timeouts)
    (found,) = by_check(diagnose(snap, expected), "consumer-timeout")
    assert found.status is Status.OK  # 7200 s under the queue's 8000 s; 60 s under 1800 s


def test_a_task_without_timeout_warns_and_default_is_said_to_be_assumed() -> None:
    app = App("doc", prefix="pp")

    @app.task
    def forever() -> None: ...

    expected = expected_of(app)
    assumed = ConsumerTimeouts({"all nodes": 1_800_000}, "RabbitMQ's default, assumed", True)
    (found,) = by_check(
        diagnose(snapshot(expected, consumer_timeouts=assumed), expected), "consumer-timeout"
    )
    assert found.status is Status.WARN and "no timeout" in found.detail
    assert "assumed" in found.detail


def test_ready_messages_without_consumers_fail(expected: Expected) -> None:
    rows = healthy_queues(expected)
    extra = queue("pp.q.orders.2", messages_ready=7, messages=7)  # a queue the App does not list
    depths = {"pp.q.default": Depth(ready=3, consumers=0), "pp.q.long": Depth(0, 0)}
    snap = snapshot(expected, queues=[*rows, extra], depths=depths)
    findings = by_check(diagnose(snap, expected), "unconsumed-queues")
    assert {(f.data["queue"], f.data["ready"]) for f in findings} == {
        ("pp.q.default", 3),
        ("pp.q.orders.2", 7),
    }
    assert all(f.status is Status.FAIL for f in findings)


def test_dead_letter_queue_growth_warns(expected: Expected) -> None:
    samples = DeadSamples(
        2.0,
        {"pp.q.default.dead": 1, "pp.q.long.dead": 4},
        {"pp.q.default.dead": 3, "pp.q.long.dead": 4},
    )
    (found,) = by_check(
        diagnose(snapshot(expected, dead_samples=samples), expected), "dead-letters"
    )
    assert found.status is Status.WARN and found.data["queue"] == "pp.q.default.dead"
    assert "grew from 1 to 3 in 2 s" in found.detail

    rows = healthy_queues(expected)
    dead = next(r for r in rows if r["name"] == "pp.q.long.dead")
    dead.update(messages=9, message_stats={"publish_details": {"rate": 0.4}})
    (found,) = by_check(diagnose(snapshot(expected, queues=rows), expected), "dead-letters")
    assert found.status is Status.WARN and found.data == {
        "queue": "pp.q.long.dead",
        "messages": 9,
        "rate": 0.4,
    }


def test_without_the_api_only_amqp_checks_run(expected: Expected) -> None:
    snap = Snapshot(
        broker="b",
        server={"version": "3.10.8"},
        api_error="connection refused",
        depths={"pp.q.default": Depth(2, 0)},
    )
    findings = diagnose(snap, expected)
    (api,) = by_check(findings, "management-api")
    assert api.status is Status.WARN and "rabbitmq-plugins enable rabbitmq_management" in api.detail
    assert api.data["skipped"] == ["feature-flags", "cluster", "alarms", "quorum-leaders"]
    assert not by_check(findings, "cluster") and not by_check(findings, "quorum-leaders")
    assert by_check(findings, "unconsumed-queues")[0].status is Status.FAIL


def test_nothing_reachable_is_exit_2() -> None:
    snap = Snapshot(broker="b", amqp_error="refused", api_error="refused")
    findings = diagnose(snap, expected_of(make_app()))
    assert [f.check for f in findings] == ["amqp", "management-api"]
    assert exit_code(findings, reachable=snap.reachable) == 3


def test_exit_codes() -> None:
    assert exit_code([ok("a", "x")]) == 0
    assert exit_code([ok("a", "x"), warn("b", "y")]) == 0
    assert exit_code([warn("b", "y")], strict=True) == 1
    assert exit_code([fail("c", "z")]) == 1
    assert fail("c", "z", n=1).as_json() == {
        "check": "c",
        "status": "fail",
        "detail": "z",
        "data": {"n": 1},
    }


def test_rabbitmqctl_answer_and_management_candidates() -> None:
    answer = "[{taskq1@localhost,{ok,1000}},{'rabbit@host-2.lan',undefined},{c@h,{ok,false}}]"
    assert parse_eval(answer) == {"taskq1@localhost": 1000, "rabbit@host-2.lan": None, "c@h": None}
    broker = "amqp://u:p@h1:6701/v,amqp://u:p@h2:6702/v"
    assert [c[0] for c in api_candidates(broker, [])] == ["http://h1:15672", "http://h2:15672"]
    assert api_candidates(broker, ["http://x:16701/"]) == [("http://x:16701", "v", "u:p")]


def test_recorded_answers_of_a_3_10_cluster() -> None:
    """Answers recorded from the 3-node test cluster (RabbitMQ 3.10.8), where an App with
    quorum queues declared its topology from a client connected to node 1, before taskq set
    the balanced leader locator and made dead queues quorum: node 1 leads them all (the
    client-local locator), and the classic dead queue has drifted from what taskq declares
    now. Fresh quorum rows have no counts yet."""
    fixtures = Path(__file__).parent / "doctor_fixtures"

    def load(name: str) -> Any:
        return json.loads((fixtures / f"{name}.json").read_text())

    expected = expected_of(App("rec", prefix="rec", queue_type="quorum"))
    snap = Snapshot(
        broker="b",
        api_base="http://localhost:16701",
        overview=load("overview"),
        feature_flags=load("feature-flags"),
        nodes=load("nodes"),
        queues=load("queues"),
    )
    findings = diagnose(snap, expected)
    status = {f.check: f.status for f in findings}
    assert status["version"] is Status.WARN and status["feature-flags"] is Status.OK
    assert status["cluster"] is Status.OK and status["alarms"] is Status.OK
    assert status["unconsumed-queues"] is Status.OK
    drift = {f.data["queue"]: f for f in by_check(findings, "queue-arguments")}
    assert {f.status for f in drift.values()} == {Status.FAIL}
    dead = drift["rec.q.default.dead"].data["differences"]
    assert dead["x-queue-type"] == {"app": "quorum", "broker": "classic"}
    assert drift["rec.q.default"].data["differences"]["x-delivery-limit"]["broker"] is None
    (leaders,) = by_check(findings, "quorum-leaders")
    assert leaders.status is Status.WARN
    assert leaders.data["leaders"] == {
        "doctor1@localhost": 3,
        "doctor2@localhost": 0,
        "doctor3@localhost": 0,
    }


def test_old_delay_levels_say_what_waits_and_how_to_remove_them(expected: Expected) -> None:
    """Issue 25: the binary levels of an older version drain by themselves; doctor tells
    what still waits there, and how to delete them once empty. Absent: nothing is said."""
    assert len(expected.old_delay_levels) == 36 and expected.old_delay_levels[0] == "pp.delay.0"
    assert by_check(diagnose(snapshot(expected), expected), "old-delay-levels") == []
    waiting = dict.fromkeys(expected.old_delay_levels, Depth(0, 0)) | {"pp.delay.20": Depth(2, 0)}
    (found,) = by_check(diagnose(snapshot(expected, depths=waiting), expected), "old-delay-levels")
    assert found.status is Status.OK and found.data["waiting"] == 2
    assert "2 delayed message(s)" in found.detail and "taskq inspect scheduled" in found.detail
    empty = dict.fromkeys(expected.old_delay_levels, Depth(0, 0))
    (found,) = by_check(diagnose(snapshot(expected, depths=empty), expected), "old-delay-levels")
    assert found.data["waiting"] == 0 and "rabbitmqctl delete_queue pp.delay.$L" in found.detail


def test_delayed_tasks_that_no_worker_holds_fail(expected: Expected) -> None:
    """Issue 25: a hold queue with delayed tasks and no consumer (no worker, or workers of a
    version before hold queues) fails, naming the queue and the upgrade; one with a worker,
    or empty, is fine."""
    assert expected.hold_queues == ("pp.hold.default", "pp.hold.long")
    assert expected.arguments["pp.hold.default"]["x-queue-type"] == "quorum"
    depths = {"pp.hold.default": Depth(3, 0), "pp.hold.long": Depth(5, 1)}
    (found,) = by_check(diagnose(snapshot(expected, depths=depths), expected), "unheld-delays")
    assert found.status is Status.FAIL and found.data == {"queue": "pp.hold.default", "ready": 3}
    assert "upgrade the workers" in found.detail
    held = {"pp.hold.default": Depth(0, 0), "pp.hold.long": Depth(5, 1)}
    (found,) = by_check(diagnose(snapshot(expected, depths=held), expected), "unheld-delays")
    assert found.status is Status.OK
