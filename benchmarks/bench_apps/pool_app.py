"""taskq tasks for benchmarks/pool.py: plain ``def`` tasks whose pool the worker chooses
(``--sync-pool thread|process``). Prefix and broker come from TASKQ_PREFIX / TASKQ_BROKER;
the harness's clients build their own with ``make_app(prefix=...)``.

Each task bumps the harness's completion counter (``counter.hit``): ``spin`` once when it
starts and once when it ends, so a drain's window runs from the first task's start to the
last task's end (with 40 tasks of a third of a second, counting only ends would leave a
task's length out of each process's window).
"""

from __future__ import annotations

import time
from typing import Any

from taskq import App

from .counter import hit
from .work import spin

SLEEP = 3600.0  # ``stuck`` sleeps this long: only a shutdown ends it


def make_app(**settings: Any) -> App:
    """An App with the benchmark's plain ``def`` tasks; ``settings`` as for ``App(...)``."""
    app = App("poolbench", **settings)

    @app.task(name="noop")
    def noop() -> None:
        """Count the task, nothing else."""
        hit()

    @app.task(name="spin")
    def spin_task(iterations: int) -> None:
        """Count the start, add ``iterations`` numbers, count the end."""
        hit()
        spin(iterations)
        hit()

    @app.task(name="stuck")
    def stuck() -> None:
        """Count the start, then sleep for an hour (the shutdown measurement's stuck task)."""
        hit()
        time.sleep(SLEEP)

    return app


app = make_app()
