"""Tasks for the concurrency-limit tests that run in a real ``taskq-worker``
(tests/integration/test_concurrency_limits.py). Settings come from the environment."""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskq import App

app = App("limitsapp")


@app.task(concurrency_limit=1, concurrency_key=lambda customer: customer)
async def hold(customer: str, marker: str) -> str:
    """Write ``marker``, then hold the customer's one slot for a minute."""
    Path(marker).write_text(customer)
    await asyncio.sleep(60)
    return "finished"
