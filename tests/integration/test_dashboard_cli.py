"""``taskq dashboard`` refuses bad flags with exit 2 before it connects to anything."""

from __future__ import annotations

from pathlib import Path

from tests.support import run_taskq

NOWHERE = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens: a connection attempt exits 3


async def test_a_public_address_needs_a_token(prefix: str) -> None:
    code, _, err = await run_taskq(prefix, "dashboard", "--host", "0.0.0.0", broker=NOWHERE)
    assert code == 2
    assert "refusing to listen on 0.0.0.0 without --token" in err


async def test_bad_alert_rules_are_refused(prefix: str, tmp_path: Path) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nkind = "backlog"\n')  # no `ready`
    code, _, err = await run_taskq(prefix, "dashboard", "--alerts", str(rules), broker=NOWHERE)
    assert code == 2
    assert "invalid alert rules" in err and "ready" in err


async def test_a_bad_root_path_or_public_origin_is_refused(prefix: str) -> None:
    code, _, err = await run_taskq(prefix, "dashboard", "--root-path", "/../x", broker=NOWHERE)
    assert code == 2 and "invalid --root-path '/../x'" in err
    from_env = {"TASKQ_DASHBOARD_ROOT_PATH": "/a b"}
    code, _, err = await run_taskq(prefix, "dashboard", env=from_env, broker=NOWHERE)
    assert code == 2 and "invalid --root-path '/a b'" in err
    origin = ("--public-origin", "https://ops.example.com/taskq")  # the path: --root-path
    code, _, err = await run_taskq(prefix, "dashboard", *origin, broker=NOWHERE)
    assert code == 2 and "invalid --public-origin" in err


async def test_a_pagerduty_webhook_needs_its_routing_key(prefix: str) -> None:
    flags = ["--webhook", "http://127.0.0.1:1/", "--webhook-format", "pagerduty"]
    code, _, err = await run_taskq(prefix, "dashboard", *flags, broker=NOWHERE)
    assert code == 2
    assert "invalid alert rules" in err and "routing_key" in err
