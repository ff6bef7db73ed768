"""The Periodic page and its API (the data: taskq.dashboard.periodic).

=========================================  ==================================================
``GET /periodic``                          the page: entries, last and next firing, the
                                           active scheduler, a *Run now* button per entry
``POST /periodic/{name}/run``              the button's form (operator, CSRF): back to the
                                           page with a notice that links to the new task
``GET /api/periodic``                      the same as JSON (``taskq beat list --json``, and
                                           each entry's ``task`` and ``args``)
``POST /api/periodic/{name}/run``          send the entry's task now: ``{"entry", "task_id"}``
                                           (404 for an entry the App does not have)
=========================================  ==================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import api

if TYPE_CHECKING:
    from .web import Pages

SENT = " run now as task "  # the notice after Run now: "{entry}: run now as task {task ID}"


class PeriodicRoutes:
    """The Periodic page's and API's handlers, rendered and guarded by ``pages``."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.periodic = pages.board.periodic

    def routes(self) -> list[Route]:
        """The page, its form's action, and the API (entry names may hold "/")."""
        return [
            Route("/periodic", self.page),
            Route("/periodic/{name:path}/run", self.run_form, methods=["POST"]),
            Route("/api/periodic", self.listing),
            Route("/api/periodic/{name:path}/run", self.run_api, methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        notice = self.pages.notice(request) or ""
        said, _, sent = notice.rpartition(SENT) if SENT in notice else ("", "", "")
        return self.pages.page(request, "periodic.html", periodic=await self.periodic.status(),
                               sent=sent, sent_entry=said.removesuffix(":"))  # fmt: skip

    async def run_form(self, request: Request) -> Response:
        task_id = await self._run(request)
        return self.pages.back("/periodic", f"{request.path_params['name']}:{SENT}{task_id}")

    async def listing(self, request: Request) -> Response:
        return JSONResponse(await self.periodic.status())

    async def run_api(self, request: Request) -> Response:
        task_id = await self._run(request)
        return JSONResponse({"entry": request.path_params["name"], "task_id": task_id})

    async def _run(self, request: Request) -> str:
        """Run the entry now (operator, CSRF); its task ID. HTTP 404 for an unknown entry."""
        await api.action_input(request, self.pages.guard)
        name = request.path_params["name"]
        task_id = await self.periodic.run_now(name)
        if task_id is None:
            raise HTTPException(404, f"no periodic entry named {name!r} in this app")
        return task_id
