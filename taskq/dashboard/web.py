"""The HTML pages, and the Starlette application that serves them with the API.

Pages are Jinja2 templates; the live parts (the overview, a task's timeline) are small
Alpine.js components fed by server-sent events (``/api/stream``), with their first state
embedded in the page as JSON. Actions are HTML forms (POST with the CSRF token, then a
redirect back), so they work without JavaScript too. Static files (Alpine, uPlot, the page
script and style) are vendored in the package: no build step.

Addresses: the dashboard may be served under a sub-path by a reverse proxy (``--root-path``,
:mod:`.paths`), so no page, script or redirect writes an absolute path as it is. Templates
write ``{{ url('/tasks') }}`` and ``{{ url(task_id|task_path) }}`` (``url`` is a Jinja global:
the root path and the path); scripts and Alpine expressions write ``url('/api/...')``
(``static/app.js``); handlers redirect with ``Pages.url(path)`` or ``Pages.back``.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ..exceptions import ConfigurationError
from ..settings import check_queue_name
from . import api
from .history import DELAYED, STATES
from .paths import prefixed, route_path, under
from .periodic_web import PeriodicRoutes
from .security import Guard
from .service import DEAD_LISTED, DEAD_PAGE, TASKS_PAGE, Dashboard
from .stats_web import StatsViews

HERE = Path(__file__).parent


def clock(value: Any) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for None)."""
    if value is None:
        return ""
    moment = dt.datetime.fromtimestamp(float(value), dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _templates(root_path: str) -> Environment:
    """The pages' templates: ``url(path)`` writes an address under ``root_path``."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters["clock"] = clock
    env.filters["task_path"] = task_path
    env.globals["url"] = prefixed(root_path)
    return env


def task_path(task_id: str) -> str:
    """The path of a task's page: every reserved character of the ID encoded (a ``/``
    too: the route takes the rest of the path). Pages write it as ``url(id|task_path)``."""
    return "/tasks/" + urllib.parse.quote(task_id, safe="")


def build(board: Dashboard) -> ASGIApp:
    """The ASGI application of ``board``: pages, API, static files, behind the Guard, under
    the root path (if any)."""
    settings = board.settings
    public = [settings.public_origin] if settings.public_origin else []
    guard = Guard(token=settings.token, hosts=[settings.host], secret=board.secret,
                  viewer_token=settings.viewer_token, origins=public)  # fmt: skip
    pages = Pages(board, guard)
    routes = [
        *pages.routes(),
        *StatsViews(board, pages.page).routes(),
        *api.Api(board, guard).routes(),
        *PeriodicRoutes(pages).routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    web = Starlette(routes=routes, exception_handlers={HTTPException: pages.refused})
    return under(settings.root_path, guard.wrap(web))


class Pages:
    """The HTML pages' handlers, bound to one Dashboard and its Guard."""

    def __init__(self, board: Dashboard, guard: Guard) -> None:
        self.board = board
        self.guard = guard
        self.env = _templates(board.settings.root_path)
        self.url = prefixed(board.settings.root_path)  # for redirects; templates: url()

    def routes(self) -> list[Route]:
        """The page routes (forms POST to some of them)."""
        return [
            Route("/", self.overview),
            Route("/tasks", self.tasks),
            Route("/tasks/{task_id:path}/cancel", self.cancel, methods=["POST"]),
            Route("/tasks/{task_id:path}", self.task),  # a task ID may hold "/"
            Route("/workflows/{root_id:path}", self.workflow),
            Route("/queues/{name}", self.queue),
            Route("/queues/{name}/replay", self.replay, methods=["POST"]),
            Route("/queues/{name}/purge", self.confirm_purge),
            Route("/queues/{name}/purge", self.purge, methods=["POST"]),
            Route("/workers/{name}/shutdown", self.shutdown, methods=["POST"]),
            Route("/limits", self.limits),
            Route("/limits/{task}", self.change_limits, methods=["POST"]),
            Route("/alerts/silence", self.silence, methods=["POST"]),
        ]

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """Render template ``name`` with what every page shows. Every address a template
        writes goes through ``url()`` (see the module doc): ``href="{{ url('/limits') }}"``."""
        html = self.env.get_template(name).render(
            csrf=self.guard.csrf, prefix=self.board.app.names.prefix,
            notice=self.notice(request), states=[*sorted(set(STATES.values())), DELAYED],
            operator=self.guard.may_act(request), **context,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def back(self, path: str, notice: str) -> Response:
        """Redirect to ``path`` (after an action) with a ``notice`` for its banner, signed:
        the banner shows only what this dashboard said, never a crafted link's text."""
        query = urllib.parse.urlencode({"notice": notice, "sig": self.guard.sign(notice)})
        return RedirectResponse(f"{self.url(path)}?{query}", 303)

    def notice(self, request: Request) -> str | None:
        """The banner's text: a notice that :meth:`back` signed, else none."""
        notice, signature = request.query_params.get("notice"), request.query_params.get("sig")
        if notice and signature and self.guard.signed(notice, signature):
            return notice
        return None

    async def overview(self, request: Request) -> Response:
        return self.page(request, "overview.html", initial=self.board.overview())

    async def tasks(self, request: Request) -> Response:
        params = request.query_params
        query = api.SearchQuery.of(params)
        q, chosen = query.text, [s.upper() for s in query.states]
        before = _number(params.get("before"))
        found = await self.board.search(q, chosen, TASKS_PAGE + 1, before, since=query.since,
                                        until=query.until)  # fmt: skip
        if q and len(found) == 1 and found[0]["task_id"] == q:
            return RedirectResponse(self.url(task_path(q)), 303)
        older = None
        if len(found) > TASKS_PAGE and chosen != [DELAYED]:
            found = found[:TASKS_PAGE]
            older = "/tasks?" + urllib.parse.urlencode(
                [*query.pairs(), ("before", repr(found[-1]["updated_at"]))]
            )
        return self.page(
            request, "tasks.html", tasks=found, q=q, state=chosen[0] if len(chosen) == 1 else "",
            chosen=chosen, since=_field(query.since), until=_field(query.until), older=older,
        )  # fmt: skip

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        found = await self.board.task(task_id)
        return self.page(request, "task.html", task_id=task_id, initial=found)

    async def cancel(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        data = await api.action_input(request, self.guard)
        done = await self.board.cancel(task_id, api.cancel_reason(data))
        return self.back(task_path(task_id), api.cancel_notice(done))

    async def limits(self, request: Request) -> Response:
        return self.page(request, "limits.html", limits=await self.board.limits())

    async def change_limits(self, request: Request) -> Response:
        data = await api.action_input(request, self.guard)
        change = api.limit_change(request.path_params["task"], data)
        await self.board.change_limits(change)
        asked = (("rate", change.rate), ("concurrency", change.concurrency))
        said = ", ".join(f"{what} {value}" for what, value in asked if value)
        return self.back("/limits", f"limits of {change.task} changed: {said}")

    async def silence(self, request: Request) -> Response:
        data = await api.action_input(request, self.guard)
        key, until = await api.silence(self.board, data)
        if until <= time.time():
            return self.back("/", f"{key}: silence lifted")
        return self.back("/", f"{key} silenced until {clock(until)} UTC")

    async def workflow(self, request: Request) -> Response:
        root_id = request.path_params["root_id"]
        found = await self.board.workflow(root_id)
        return self.page(request, "workflow.html", root_id=root_id, workflow=found)

    async def queue(self, request: Request) -> Response:
        name = _queue(request)
        page = int(_number(request.query_params.get("page")) or 0)
        total, dead = await self.board.dead_letters(name, page)
        first = min(page * DEAD_PAGE, DEAD_LISTED - DEAD_PAGE) if dead else 0
        return self.page(
            request,
            "queue.html",
            queue=name,
            total=total,
            dead=dead,
            first=first,
            page=page,
            pages=-(-min(total, DEAD_LISTED) // DEAD_PAGE),
        )

    async def replay(self, request: Request) -> Response:
        name = _queue(request)
        data = await api.action_input(request, self.guard)
        ids = None if data.get("all") else [data.get("task_id", "")]
        done = await self.board.replay(name, ids)
        if done is None:
            raise HTTPException(404, api.no_dead_queue(name))
        return self.back(f"/queues/{name}", f"replayed {len(done)} message(s) to {name}")

    async def confirm_purge(self, request: Request) -> Response:
        name = _queue(request)
        total, _ = await self.board.dead_letters(name)
        return self.page(request, "purge.html", queue=name, total=total)

    async def purge(self, request: Request) -> Response:
        name = _queue(request)
        data = await api.action_input(request, self.guard)
        if data.get("confirm") != name:
            return self.back(f"/queues/{name}", "not purged: the confirmation did not match")
        purged = await self.board.purge(name)
        return self.back(f"/queues/{name}", f"purged {purged} dead letter(s)")

    async def shutdown(self, request: Request) -> Response:
        name = request.path_params["name"]
        await api.action_input(request, self.guard)
        answered = await self.board.shutdown(name)
        notice = f"{name}: stopping gracefully" if answered else f"{name} did not answer"
        return self.back("/", notice)

    async def refused(self, request: Request, exc: Exception) -> Response:
        """An HTTPException as JSON (API) or as a page."""
        assert isinstance(exc, HTTPException)
        if route_path(request.scope).startswith("/api/"):
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        return self.page(request, "error.html", status=exc.status_code, message=exc.detail)


def _field(moment: float | None) -> str:
    """A time as a ``datetime-local`` field shows it (UTC, to the minute)."""
    if moment is None:
        return ""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M")


def _number(text: str | None) -> float | None:
    """A query parameter as a number (None if absent; 400 if it is not one)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise HTTPException(400, f"not a number: {text!r}") from None


def _queue(request: Request) -> str:
    try:
        return check_queue_name(request.path_params["name"])
    except ConfigurationError as exc:
        raise HTTPException(400, str(exc)) from None
