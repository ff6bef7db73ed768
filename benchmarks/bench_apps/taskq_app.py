"""The taskq benchmark app: one no-op task. The worker imports ``app`` (prefix, broker and
result store from TASKQ_PREFIX / TASKQ_BROKER / TASKQ_RESULTS); the harness's clients build
their own with ``make_app(prefix=..., results=...)``, through the public API only."""

from __future__ import annotations

from typing import Any

from taskq import App

from .counter import hit


def make_app(**settings: Any) -> App:
    """An App with the benchmark's ``noop`` task; ``settings`` as for ``App(...)``."""
    app = App("bench", **settings)

    @app.task(name="noop")
    async def noop(i: int) -> int:
        """Count the task (the harness's completion signal) and return its argument."""
        hit()
        return i

    return app


app = make_app()
