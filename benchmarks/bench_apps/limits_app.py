"""taskq app of benchmarks/limits.py: a rate-limited task and a task limited per key.

BENCH_RATE sets the rate limit (default 50/s), BENCH_CONCURRENCY the limit per key
(default 3), BENCH_HOLD the seconds a keyed task runs (default 0.1)."""

from __future__ import annotations

import asyncio
import os

from taskq import App

from .stamps import stamp

app = App("bench-limits")
HOLD = float(os.environ.get("BENCH_HOLD", "0.1"))


@app.task(rate_limit=os.environ.get("BENCH_RATE", "50/s"), ignore_result=True)
async def metered(i: int) -> None:
    stamp("s")


@app.task(
    concurrency_limit=int(os.environ.get("BENCH_CONCURRENCY", "3")),
    concurrency_key=lambda key: key,
    ignore_result=True,
)
async def keyed(key: str, i: int) -> None:
    stamp("s", key)
    await asyncio.sleep(HOLD)
    stamp("e", key)
