"""The dashboard's limits API (``/api/limits``): a real ``taskq dashboard`` subprocess
publishes a change to the limits stream that workers read (tests/integration/
test_limit_changes.py shows workers applying such changes)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from taskq import App
from taskq.limits.changes import CHANGE_TYPE, MARKER_TYPE, STREAM_ARGUMENTS, changes_made
from taskq.streams import json_message
from taskq.transport import Delivery
from tests.dashboard_support import DashboardProcess
from tests.support import BROKER

pytestmark = pytest.mark.one_queue_only
TOKEN = "t0ken-" + uuid.uuid4().hex


async def test_limits_change_through_the_dashboard_api(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    dashboard = DashboardProcess("tests.apps.limitsapp:app", prefix, tmp_path, "--token", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        url = await asyncio.to_thread(dashboard.start)
        async with httpx.AsyncClient(base_url=url, headers=auth) as http:
            bad = await http.post("/api/limits/hold", json={"rate": "fast"})
            assert bad.status_code == 400 and "invalid rate limit" in bad.text
            assert (await http.post("/api/limits/hold", json={})).status_code == 400
            ok = await http.post("/api/limits/hold", json={"concurrency": 3, "rate": "10/s"})
            assert ok.status_code == 200 and ok.json()["concurrency"] == 3
            shown = (await http.get("/api/limits")).json()["limits"]
            assert [(c["task"], c["rate"], c["concurrency"]) for c in shown] == [
                ("hold", "10/s", 3)
            ]
            for _ in range(20):  # a page or a script that polls: nothing added to the stream
                assert (await http.get("/api/limits")).json()["limits"] == shown
            anonymous = await http.post("/api/limits/hold", json={"rate": "1/s"}, headers={
                "Authorization": ""})  # fmt: skip
            assert anonymous.status_code == 401
    finally:
        dashboard.kill()
    app = App("client", broker=BROKER, prefix=prefix)
    async with app:  # what every worker reads from the stream
        made = await changes_made(app.transport, app.names, 30.0)
        types = await stream_types(app)
    assert (made["hold"].rate, made["hold"].concurrency) == ("10/s", 3)
    # The dashboard's reader added one catch-up marker, changes_made above another.
    assert types.count(MARKER_TYPE) == 2 and types.count(CHANGE_TYPE) == 1, types


async def stream_types(app: App) -> list[str]:
    """The type of every message on the limits stream, read up to one of this test's own."""
    types: list[str] = []
    end = uuid.uuid4().hex
    done = asyncio.Event()
    acks: set[asyncio.Future[None]] = set()

    def on_delivery(delivery: Delivery) -> None:
        if delivery.type == end:
            done.set()
        elif not done.is_set():
            types.append(str(delivery.type))
        ack = asyncio.ensure_future(delivery.ack())
        acks.add(ack)
        ack.add_done_callback(acks.discard)

    cancel = await app.transport.read_stream(app.names.limit_changes, on_delivery,
                                             arguments=STREAM_ARGUMENTS, prefetch=100)  # fmt: skip
    try:
        await app.transport.publish("", app.names.limit_changes, json_message(end, {}))
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await cancel()
    return types
