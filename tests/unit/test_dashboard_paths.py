"""The dashboard under a sub-path (taskq.dashboard.paths) and what its Guard trusts behind a
proxy that rewrites ``Host``: pure ASGI, through httpx's ASGI transport, no broker."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from taskq.dashboard.paths import origin_of, public_origin, root_path, under
from taskq.dashboard.security import Guard
from taskq.dashboard.web import HERE
from taskq.exceptions import ConfigurationError

TOKEN = "t0ken"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("", ""), ("/", ""), ("taskq", "/taskq"), ("/taskq/", "/taskq"), ("/a/b.c/", "/a/b.c")],
)
def test_root_paths_are_normalized(given: str, expected: str) -> None:
    assert root_path(given) == expected


@pytest.mark.parametrize("given", ["/../x", "/a b", '/a"b', "/a?b", "/%2e"])
def test_a_root_path_with_more_than_plain_segments_is_refused(given: str) -> None:
    with pytest.raises(ConfigurationError, match="--root-path"):
        root_path(given)


def test_public_origins_are_normalized_as_browsers_send_them() -> None:
    assert public_origin("HTTPS://Ops.Example.com:443/") == "https://ops.example.com"
    assert public_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert origin_of("http://[::1]:80") == "http://[::1]"
    assert public_origin("") is None
    for bad in ("http://h/taskq", "ftp://h", "http://u:p@h", "h:8080", "http://h:x"):
        with pytest.raises(ConfigurationError, match="--public-origin"):
            public_origin(bad)


def app(guard: Guard) -> httpx.AsyncClient:
    """A small app under ``/taskq``, behind ``guard``, as the dashboard builds its own."""

    async def where(request: Request) -> Response:
        return PlainTextResponse(request.url.path)

    async def act(request: Request) -> Response:
        supplied = request.headers.get("x-csrf-token")
        return PlainTextResponse("ok" if guard.csrf_ok(request, supplied) else "refused")

    routes = [
        Route("/limits", where),
        Route("/act", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static")),
    ]
    asgi = under("/taskq", guard.wrap(Starlette(routes=routes)))
    transport = httpx.ASGITransport(app=asgi)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5555")


async def test_requests_redirects_and_the_login_cookie_carry_the_root_path() -> None:
    async with app(Guard(token=TOKEN, hosts=["127.0.0.1"], secret="s")) as client:
        login = await client.get("/limits?token=" + TOKEN + "&q=1")
        assert (login.status_code, login.headers["location"]) == (303, "/taskq/limits?q=1")
        assert "Path=/taskq;" in login.headers["set-cookie"]
        # The proxy strips /taskq: the cookie (Path=/taskq) is the browser's, not this client's.
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        where = await client.get("/limits")
        assert where.text == "/taskq/limits"  # request.url: the address the browser used
        slash = await client.get("/limits/")  # Starlette's redirect, path-only (not Host's)
        assert slash.is_redirect and slash.headers["location"] == "/taskq/limits"
        del client.headers["Authorization"]
        unknown = await client.get("/api/overview", headers={"Accept": "text/html"})
        assert unknown.status_code == 401 and "token required" in unknown.json()["error"]


async def test_the_static_files_are_found_under_the_root_path() -> None:
    async with app(Guard(token=None, hosts=["127.0.0.1"], secret="s")) as client:
        script = await client.get("/static/app.js")
        assert script.status_code == 200 and "const ROOT" in script.text


async def test_an_origin_is_trusted_only_if_it_is_the_host_or_the_public_origin() -> None:
    proxy = "http://proxy.example:8080"
    plain = Guard(token=None, hosts=["127.0.0.1"], secret="s")
    public = Guard(token=None, hosts=["127.0.0.1"], secret="s", origins=[proxy])
    for guard, origin, expected in [
        (plain, "http://127.0.0.1:5555", "ok"),  # its own Host: no proxy in between
        (plain, proxy, "refused"),  # the proxy rewrote Host: not known to be the proxy's
        (public, proxy, "ok"),
        (public, "http://PROXY.example:8080/", "ok"),
        (public, "https://proxy.example:8080", "refused"),  # another scheme
        (public, "http://evil.example", "refused"),
        (public, "null", "refused"),
    ]:
        async with app(guard) as client:
            headers = {"Origin": origin, "X-CSRF-Token": guard.csrf}
            answer = await client.post("/act", headers=headers)
            assert answer.text == expected, (origin, guard.origins)
            forged = {"Origin": origin, "X-CSRF-Token": "forged"}
            assert (await client.post("/act", headers=forged)).text == "refused"


async def test_without_a_token_the_public_origins_host_is_accepted_in_host() -> None:
    guard = Guard(token=None, hosts=["127.0.0.1"], secret="s", origins=["https://ops.example"])
    async with app(guard) as client:
        assert (await client.get("/limits", headers={"Host": "ops.example"})).status_code == 200
        assert (await client.get("/limits", headers={"Host": "evil.example"})).status_code == 400
