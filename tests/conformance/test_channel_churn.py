"""More than 65,535 channel opens on one connection, with the default settings (issue 20,
defect 2): channel numbers are 16 bits, so a client that never reuses them fails every new
channel from then on, and a publish the broker refuses (which closes the confirm channel)
then fails every send after it. ``python -m benchmarks.channel_churn`` runs 200,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.channel_churn import churn, refuse_then_send
from taskq import App
from taskq.control import LastSeen
from tests.support import BROKER

pytestmark = pytest.mark.one_queue_only  # no worker: the client's connections are under test
NATIVE_ONLY = "channel-number reuse of the native client"


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_more_than_65535_opens_on_one_connection(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    app = App("channels", broker=BROKER, prefix=prefix)  # the default channel_max
    await app.open()
    await app.send("add", 0, 0)  # declares the default queue
    try:
        await churn(app, 66_000, 100, 1000, LastSeen(BROKER, prefix, str(tmp_path)))
        await refuse_then_send(app, 10)
    finally:
        await app.close()
