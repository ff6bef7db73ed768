"""The App of benchmarks/periodic_soak.py: one entry every second, every missed tick caught up
(so every tick must be sent exactly once). Settings come from ``TASKQ_*``."""

from __future__ import annotations

from taskq import App

app = App("beat-soak")


@app.periodic(every=1, catch_up="all")
async def soak_tick() -> None:
    """Never run: the soak counts firings in the work queue."""
