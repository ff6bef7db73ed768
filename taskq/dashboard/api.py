"""The JSON API under ``/api/`` (the pages use it, and scripts can), and ``/metrics``.

=========================================  ==================================================
``GET /api/overview``                      workers, missing, queues, alerts, recent tasks
``GET /api/workers``                       workers, missing workers, ``discovering`` (true
                                           until the first reading of the workers is over)
``GET /api/queues``                        work queues: depths, rates, dead letters
``GET /api/alerts``                        alerts firing now (each with its ``key`` and
                                           ``silenced_until``), the latest transitions, the
                                           silences, the rules (with their ``id``) and the
                                           rules file's error (``rules_error``)
``POST /api/alerts/silence``               ``{"key": "<alert key or rule id>", "minutes":
                                           60}``: no webhook hears of it until then (``0``
                                           lifts the silence; 404: no such rule)
``GET /api/tasks?q=&state=&limit=``        task search (ID prefix or name, state)
``GET /api/tasks/{id}``                    one task with its timeline (404 if never seen or
                                           pruned: then ``"pruned": true``)
``GET /api/workflows/{root_id}``           a workflow's tasks in order, with their states
                                           (404 if none was seen)
``GET /api/stats?task=&since=&until=``     per-task statistics: counts, failure %, runtime
                                           p50/p95, and a task's series (stats_web)
``GET /api/queues/{name}/dead?page=``      a queue's dead letters, 50 a page (from 0)
``POST /api/queues/{name}/dead/replay``    ``{"ids": [...]}`` or ``{"all": true}`` (404: none)
``POST /api/queues/{name}/dead/purge``     ``{"confirm": "<queue name>"}``
``POST /api/workers/{name}/shutdown``      graceful stop
``POST /api/tasks/{id}/cancel``            ``{"reason": "...", "wait": false}``: cancel a
                                           task (its status after the cancel, and with
                                           ``wait`` where it was stopped)
``GET /api/limits``                        limits changed at runtime (taskq.limits.changes)
``POST /api/limits/{task}``                ``{"rate": "50/s"}`` and/or ``{"concurrency": 5}``
                                           (or ``"off"``, ``"default"``): every worker
``GET /api/periodic``                      periodic entries, the active scheduler (see
                                           taskq.dashboard.periodic_web)
``POST /api/periodic/{name}/run``          send a periodic entry's task now (unique ID)
``GET /api/session``                       the CSRF token for POSTs (see security)
``GET /api/stream?view=overview|task=ID``  server-sent events: ``overview`` / ``task``
``GET /metrics``                           Prometheus text
=========================================  ==================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..cancel import CancelResult
from ..exceptions import ConfigurationError
from ..limits.changes import LimitChange
from .alerting import UnknownAlert
from .security import CSRF_HEADER, Guard
from .service import Dashboard

KEEPALIVE = 15.0
FOREIGN_ORIGIN = (
    "CSRF check failed: the request comes from another origin (behind a reverse proxy that "
    "rewrites the Host header, start the dashboard with --public-origin set to the address "
    "browsers use)"
)


async def action_input(request: Request, guard: Guard) -> dict[str, Any]:
    """The fields of a POST (JSON or a urlencoded form), once its CSRF check passed (and
    only for the operator: 403 for the read-only viewer)."""
    if not guard.may_act(request):
        raise HTTPException(403, "read-only access: this action needs the operator token")
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "the body must be a JSON object")
    else:
        data = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
    if guard.foreign_origin(request):
        raise HTTPException(403, FOREIGN_ORIGIN)
    if not guard.csrf_ok(request, request.headers.get(CSRF_HEADER) or data.get("csrf")):
        raise HTTPException(403, "CSRF check failed: reload the page and try again")
    return data


DEFAULT_REASON = "cancelled from the dashboard"
REASON_LENGTH = 500  # characters of a cancel's reason kept


def cancel_reason(data: dict[str, Any]) -> str:
    """The reason of a cancel action (the default one if none was given)."""
    reason = str(data.get("reason") or "").strip()[:REASON_LENGTH]
    return reason or DEFAULT_REASON


def cancel_notice(done: CancelResult) -> str:
    """What a cancel did, in words (the banner after the Cancel button)."""
    if done.cancelled:
        return f"cancelled: {done.reason}"
    if done.status is None:
        return f"cancelled: {done.reason} (the result store cannot confirm it from here)"
    return f"not cancelled: the task had ended first ({done.status.value})"


async def silence(board: Dashboard, data: dict[str, Any]) -> tuple[str, float]:
    """Silence what a silence action asks (``key``, ``minutes``); the key and until when.
    HTTP 400 if it is malformed, 404 if the key names no rule."""
    key = str(data.get("key") or "").strip()
    try:
        minutes = float(data.get("minutes", ""))
    except (TypeError, ValueError):
        raise HTTPException(400, 'say how long: {"key": "...", "minutes": 60}') from None
    if not key:
        raise HTTPException(400, "say which alert: its key, or its rule's id")
    try:
        return key, await board.silence(key, minutes)
    except UnknownAlert as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def no_dead_queue(queue: str) -> str:
    """Why a queue's dead letters cannot be replayed."""
    return f"{queue} has no dead-letter queue: nothing to replay (is the queue name right?)"


class Api:
    """The API's handlers, bound to one Dashboard and its Guard."""

    def __init__(self, board: Dashboard, guard: Guard) -> None:
        self.board = board
        self.guard = guard

    def routes(self) -> list[Route]:
        """The API routes."""
        return [
            Route("/api/overview", self.overview),
            Route("/api/workers", self.workers),
            Route("/api/workers/{name}/shutdown", self.shutdown, methods=["POST"]),
            Route("/api/queues", self.queues),
            Route("/api/queues/{name}/dead", _guarded(self.dead)),
            Route("/api/queues/{name}/dead/replay", _guarded(self.replay), methods=["POST"]),
            Route("/api/queues/{name}/dead/purge", _guarded(self.purge), methods=["POST"]),
            Route("/api/limits", self.limits),
            Route("/api/limits/{task}", self.change_limits, methods=["POST"]),
            Route("/api/alerts", self.alerts),
            Route("/api/alerts/silence", self.silence, methods=["POST"]),
            Route("/api/tasks", self.tasks),
            Route("/api/tasks/{task_id:path}/cancel", self.cancel, methods=["POST"]),
            Route("/api/tasks/{task_id:path}", self.task),  # a task ID may hold "/"
            Route("/api/workflows/{root_id:path}", self.workflow),
            Route("/api/session", self.session),
            Route("/api/stream", self.stream),
            Route("/metrics", self.metrics),
        ]

    async def overview(self, request: Request) -> Response:
        return JSONResponse(self.board.overview())

    async def workers(self, request: Request) -> Response:
        data = self.board.overview()
        return JSONResponse({key: data[key] for key in ("workers", "missing", "discovering")})

    async def queues(self, request: Request) -> Response:
        data = self.board.overview()
        return JSONResponse({"queues": data["queues"], "delayed": data["delayed"],
                             "source": data["source"]})  # fmt: skip

    async def alerts(self, request: Request) -> Response:
        data = self.board.overview()
        keys = ("alerts", "transitions", "silences", "rules", "rules_error")
        return JSONResponse({key: data[key] for key in keys})

    async def silence(self, request: Request) -> Response:
        key, until = await silence(self.board, await action_input(request, self.guard))
        return JSONResponse({"key": key, "until": until})

    async def tasks(self, request: Request) -> Response:
        params = request.query_params
        try:
            limit = min(int(params.get("limit") or 100), 1000)
        except ValueError:
            raise HTTPException(400, "limit must be a number") from None
        query = SearchQuery.of(params)
        found = await self.board.search(query.text, query.states, limit, since=query.since,
                                        until=query.until)  # fmt: skip
        return JSONResponse({"tasks": found})

    async def task(self, request: Request) -> Response:
        found = await self.board.task(request.path_params["task_id"])
        if found is None:
            return JSONResponse({"error": "no such task in the history"}, status_code=404)
        if found.get("pruned"):
            error = "pruned from the history (seen, then dropped by its retention)"
            return JSONResponse({"error": error, **found}, status_code=404)
        return JSONResponse(found)

    async def workflow(self, request: Request) -> Response:
        found = await self.board.workflow(request.path_params["root_id"])
        if not found["total"]:
            return JSONResponse({"error": "no task of this workflow in the history"}, 404)
        return JSONResponse(found)

    async def dead(self, request: Request) -> Response:
        page = request.query_params.get("page") or "0"
        if not page.isdigit():
            raise HTTPException(400, "page must be a whole number")
        total, listed = await self.board.dead_letters(request.path_params["name"], int(page))
        return JSONResponse({"total": total, "dead": [d.as_json() for d in listed]})

    async def replay(self, request: Request) -> Response:
        data = await action_input(request, self.guard)
        ids = data.get("ids")
        everything = data.get("all") is True
        if not (everything or (isinstance(ids, list) and ids)):
            raise HTTPException(400, 'say which: {"ids": [...]} or {"all": true}')
        name = request.path_params["name"]
        done = await self.board.replay(name, None if everything else ids)
        if done is None:
            raise HTTPException(404, no_dead_queue(name))
        return JSONResponse({"replayed": [d.task_id for d in done]})

    async def purge(self, request: Request) -> Response:
        data = await action_input(request, self.guard)
        name = request.path_params["name"]
        if data.get("confirm") != name:
            raise HTTPException(400, f'confirm with {{"confirm": "{name}"}}')
        return JSONResponse({"purged": await self.board.purge(name)})

    async def cancel(self, request: Request) -> Response:
        data = await action_input(request, self.guard)
        task_id = request.path_params["task_id"]
        done = await self.board.cancel(task_id, cancel_reason(data), wait=data.get("wait") is True)
        status = None if done.status is None else done.status.value
        return JSONResponse({"task_id": task_id, "status": status, "reason": done.reason,
                             "stopped_on": list(done.stopped_on), "stopped": done.stopped,
                             "reached": done.reached,
                             "notice": cancel_notice(done)})  # fmt: skip

    async def shutdown(self, request: Request) -> Response:
        await action_input(request, self.guard)
        answered = await self.board.shutdown(request.path_params["name"])
        return JSONResponse({"stopping": answered}, status_code=200 if answered else 404)

    async def limits(self, request: Request) -> Response:
        made = await self.board.limit_changes.current()
        return JSONResponse({"limits": [c.as_json() for c in made.values()]})

    async def change_limits(self, request: Request) -> Response:
        data = await action_input(request, self.guard)
        change = limit_change(request.path_params["task"], data)
        await self.board.change_limits(change)
        return JSONResponse(change.as_json())

    async def session(self, request: Request) -> Response:
        return JSONResponse({"csrf": self.guard.csrf, **self.board.describe()})

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.board.metrics(), media_type="text/plain; version=0.0.4")

    async def stream(self, request: Request) -> Response:
        return StreamingResponse(
            _stream(self.board, request), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class SearchQuery:
    """A task search as the tasks page and ``GET /api/tasks`` take it: ``q`` (an ID prefix or
    part of a name), ``state`` as often as wanted (any of them), ``since`` and ``until`` (the
    last update's time: seconds since the epoch, or an ISO 8601 time, UTC unless it says)."""

    text: str = ""
    states: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None

    @classmethod
    def of(cls, params: QueryParams) -> SearchQuery:
        """From a request's query parameters; HTTP 400 for a bad time."""
        states = params.getlist("state")
        return cls(
            str(params.get("q") or "").strip(), tuple(s for s in states if s),
            moment(params.get("since")), moment(params.get("until")),
        )  # fmt: skip

    def pairs(self) -> list[tuple[str, str]]:
        """As query parameters again (a next page's link)."""
        out = [("q", self.text), *(("state", s) for s in self.states)]
        out += [(k, repr(v)) for k, v in (("since", self.since), ("until", self.until)) if v]
        return out


def moment(text: str | None) -> float | None:
    """A time given in a query: seconds since the epoch, or ISO 8601 (a form's
    ``datetime-local`` value has no zone: UTC, as every time the dashboard shows). None if
    absent; HTTP 400 if it is neither."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(400, f"not a time: {text!r} (use ISO 8601 or epoch seconds)") from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def limit_change(task: str, data: dict[str, Any]) -> LimitChange:
    """The change ``data`` asks of ``task``'s limits (JSON, or the limits page's form, whose
    empty fields change nothing); HTTP 400 if it is malformed or asks nothing."""
    rate, concurrency = data.get("rate") or None, data.get("concurrency") or None
    if isinstance(rate, str):
        rate = rate.strip() or None
    if isinstance(concurrency, str):
        concurrency = concurrency.strip() or None
        if concurrency is not None and concurrency.isdigit():  # from a form
            concurrency = int(concurrency)
    if rate is None and concurrency is None:
        raise HTTPException(400, 'say what: {"rate": "50/s"} and/or {"concurrency": 5}')
    try:
        return LimitChange(task, rate, concurrency)
    except ConfigurationError as exc:
        raise HTTPException(400, str(exc)) from None


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Any]:
    """``handler`` with a bad queue name answered 400 instead of an error page."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ConfigurationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return guarded


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


async def _stream(board: Dashboard, request: Request) -> AsyncIterator[str]:
    """Server-sent events: the overview at each tick, or one task each time it changes."""
    task_id = request.query_params.get("task")
    last: Any = object()
    while not board.closing.is_set():
        if task_id:
            found = await board.task(task_id)
            changed = None if found is None else task_version(found)
            if found is not None and changed != last:
                last = changed
                yield _sse("task", found)
        else:
            yield _sse("overview", board.overview())
        yield ": keepalive\n\n"
        await board.ticker.wait(KEEPALIVE)
        if await request.is_disconnected():
            return


def task_version(task: dict[str, Any]) -> Any:
    """What changes whenever a task's page must show something new: its last update, its
    timeline's length (an event older than the last update, such as a worker's own
    ``task.cancelled`` after the dashboard's Cancel button, adds a row and changes nothing
    else) and its workflow's members."""
    return task["updated_at"], len(task.get("timeline") or ()), _workflow_changed(task)


def _workflow_changed(task: dict[str, Any]) -> Any:
    """When the newest of a task's workflow members changed, and how many there are (None:
    not in a workflow)."""
    workflow = task.get("workflow")
    return None if workflow is None else (workflow["updated_at"], workflow["total"])
