"""The per-task statistics page, ``/stats``, and its API, ``GET /api/stats``
(taskq.dashboard.stats has the figures and how they are kept).

``GET /api/stats?since=&until=``: each task name's summary from ``since`` to ``until``
(seconds since the epoch or ISO 8601, UTC unless it says; by default the last hour): tasks
finished, succeeded, failed, retried, failure %, runtime p50 and p95 in ms, and under ``now``
the same over the last five minutes with ``rate``, tasks finished per second.
``&task=NAME``: that task only (listed even without a run), with its ``series``, one point
per ``step`` seconds (``&step=``; by default at most 360 points): time, finished, failed,
rate, failure %, p50 and p95 in ms. ``&series=1``: the series of every task.

The page lists the same, and charts each task's series (uPlot) over a range it offers (an
hour to a week); it asks the API again every 30 s.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import stats
from .api import moment
from .history import History
from .service import Dashboard

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
"""The ranges the page offers (``/stats?range=24h``)."""
DEFAULT_RANGE = "1h"


def report(
    history: History,
    now: float,
    since: float,
    until: float,
    *,
    task: str | None = None,
    step: float | None = None,
    with_series: bool = False,
) -> dict[str, Any]:
    """The summaries (and series) of the tasks from ``since`` to ``until`` (blocking)."""
    chosen = stats.step_for(since, until, step)
    rows = history.task_stats(since, until, task)
    recent = history.task_stats(stats.recent_since(now), now, task)
    listed = stats.listing(rows, recent, now, [task] if task else ())
    if with_series or task:
        by_name: dict[str, stats.Rows] = {}
        for row in rows:
            by_name.setdefault(row[0], []).append(row)
        for summary in listed:
            summary["series"] = stats.series(by_name.get(summary["task"], []), since, until,
                                             chosen)  # fmt: skip
    return {"since": since, "until": until, "step": chosen, "now": now, "tasks": listed}


class StatsViews:
    """``/stats`` and ``/api/stats`` for one Dashboard; ``render`` renders a page template
    (the Pages' ``page``)."""

    def __init__(self, board: Dashboard, render: Callable[..., Response]) -> None:
        self.board = board
        self.render = render

    def routes(self) -> list[Route]:
        """The page's and the API's routes."""
        return [Route("/stats", self.page), Route("/api/stats", self.api)]

    async def page(self, request: Request) -> Response:
        chosen = request.query_params.get("range") or DEFAULT_RANGE
        if chosen not in RANGES:
            raise HTTPException(400, f"range must be one of {', '.join(RANGES)}")
        now = time.time()
        found = await asyncio.to_thread(report, self.board.history, now, now - RANGES[chosen],
                                        now, with_series=True)  # fmt: skip
        found["range"] = RANGES[chosen]
        return self.render(request, "stats.html", initial=found, ranges=RANGES, chosen=chosen)

    async def api(self, request: Request) -> Response:
        params = request.query_params
        now = time.time()
        until = moment(params.get("until")) or now
        since = moment(params.get("since")) or until - RANGES[DEFAULT_RANGE]
        if not (math.isfinite(since) and math.isfinite(until)) or since >= until:
            raise HTTPException(400, "since must come before until (both finite times)")
        step = params.get("step")
        if step and not step.isdigit():
            raise HTTPException(400, "step must be a whole number of seconds")
        found = await asyncio.to_thread(
            report, self.board.history, now, since, until, task=params.get("task") or None,
            step=float(step) if step else None, with_series=params.get("series") == "1",
        )  # fmt: skip
        return JSONResponse(found)
