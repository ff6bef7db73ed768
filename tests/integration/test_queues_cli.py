"""``taskq queues`` shows the depths of queues with known contents; ``inspect scheduled`` the
delay levels. No worker runs, so nothing moves while the CLI looks."""

from __future__ import annotations

import json
from typing import Any

from taskq import App
from taskq.queue_depths import from_api, management_url
from tests.cluster_support import Cluster
from tests.doctor_support import UNREACHABLE_API
from tests.support import BROKER, eventually, run_taskq

APP = "tests.apps.ops_app:app"


async def run_cli(prefix: str, *args: str, broker: str = BROKER) -> tuple[int, str]:
    done = await run_taskq(prefix, *args, app=APP, broker=broker)
    return done.code, done.out


async def known_depths(prefix: str, broker: str, api: str) -> tuple[str, dict[str, Any]]:
    """Send 3 tasks to ``default`` and 2 to ``other``, then run ``taskq queues --json`` with
    the management API at ``api`` until it shows them: the source it names and the rows."""
    async with App("ops-client", broker=broker, prefix=prefix) as app:
        for i in range(3):
            await app.send("add", i, i)
        other = app.named("add").options(queue="other")
        for i in range(2):
            await other.delay(i, i)

    async def listed() -> dict[str, Any]:
        code, out = await run_cli(
            prefix, "queues", "--json", "--queue", "other", "--management-url", api, broker=broker
        )
        assert code == 0
        result: dict[str, Any] = json.loads(out)
        rows = {row["name"]: row for row in result["queues"]}
        # The management API samples its numbers: poll until they show what was sent.
        ready = rows.get(f"{prefix}.q.default", {}).get("ready")
        return result if ready == 3 else {}

    result = await eventually(listed, timeout=30, interval=0.5, what="the queue depths")
    rows = {row["name"]: row for row in result["queues"]}
    assert rows[f"{prefix}.q.other"]["ready"] == 2
    assert rows[f"{prefix}.q.default.dead"]["ready"] == 0
    assert rows[f"{prefix}.q.default"]["consumers"] == 0
    return result["source"], rows


async def test_queues_shows_known_depths_by_passive_declares(
    prefix: str, topology_cleanup: set[str]
) -> None:
    topology_cleanup.add("other")
    source, rows = await known_depths(prefix, BROKER, UNREACHABLE_API)
    assert source.startswith("passive declares"), source
    assert rows[f"{prefix}.q.default"]["unacked"] is None  # a declare cannot tell

    code, out = await run_cli(
        prefix, "queues", "--queue", "other", "--management-url", UNREACHABLE_API
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["QUEUE", "READY", "UNACKED", "CONSUMERS"]
    assert f"{prefix}.q.other" in out and lines[-1].startswith("source: passive declares")


async def test_queues_shows_known_depths_from_the_management_api(
    cluster: Cluster, cluster_prefix: str
) -> None:
    # The shared broker has no management plugin; node 1 of the test cluster has.
    api = f"http://localhost:{cluster.mgmt_port(1)}"
    source, rows = await known_depths(cluster_prefix, cluster.url(1), api)
    assert source.startswith("management API"), source
    assert rows[f"{cluster_prefix}.q.default"]["unacked"] == 0


async def test_inspect_scheduled_counts_and_peeks(prefix: str, topology_cleanup: set[str]) -> None:
    async with App("ops-client", broker=BROKER, prefix=prefix) as app:
        handle = await app.named("add").options(countdown=3600).delay(1, 1)
    code, out = await run_cli(prefix, "inspect", "scheduled", "--json", "--peek", "5")
    assert code == 0
    result = json.loads(out)
    assert sum(level["messages"] for level in result["levels"]) == 1
    (peeked,) = result["peeked"]
    assert peeked["task_id"] == handle.id and peeked["task"] == "add"
    assert peeked["queue"] == "default" and peeked["eta"]
    # Peeking put the message back.
    code, out = await run_cli(prefix, "inspect", "scheduled", "--json")
    assert code == 0
    assert sum(level["messages"] for level in json.loads(out)["levels"]) == 1


def test_management_api_rows_are_filtered_by_prefix() -> None:
    rows = [
        {"name": "p.delay.10", "messages_ready": 1, "messages_unacknowledged": 0, "consumers": 0},
        {"name": "p.q.default", "messages_ready": 4, "messages_unacknowledged": 2, "consumers": 1},
        {"name": "p.delay.2", "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0},
        {"name": "other.q.default", "messages_ready": 9},
    ]
    assert [r["name"] for r in from_api(rows, "p")] == ["p.q.default", "p.delay.2", "p.delay.10"]
    assert from_api(rows, "p")[0] == {
        "name": "p.q.default",
        "ready": 4,
        "unacked": 2,
        "consumers": 1,
    }
    assert management_url("amqp://u:s%40cret@rabbit:5672/vh") == (
        "http://rabbit:15672",
        "vh",
        "u:s@cret",
    )
    assert management_url("amqp://127.0.0.1/")[1:] == ("/", "guest:guest")
