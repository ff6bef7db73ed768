"""Who may see the dashboard and act through it.

- Without a token the dashboard listens on loopback only (settings.check_exposure), and
  requests must name a loopback host (or the one it listens on) in their ``Host`` header: a
  page elsewhere that rebinds its DNS name to 127.0.0.1 is refused.
- With a token every request needs it: ``Authorization: Bearer T``, or ``?token=T`` once,
  which sets an HttpOnly, SameSite=Strict cookie and redirects to the same URL without the
  token (so that it stays out of the history; Referer headers never leave the origin). The
  cookie holds a value derived from the token, not the token.
- A second, read-only token (``viewer_token``) sees every page and every GET, and no action:
  its requests are the ``viewer``'s, the others the ``operator``'s (:meth:`Guard.may_act`).
- Actions are POSTs that carry the CSRF token (``X-CSRF-Token`` header or ``csrf`` form
  field), derived from the dashboard's secret (random, kept in its history file, so that a
  page opened before a restart still acts after it) and shown only in its pages and in
  ``/api/session``; a request with an ``Origin`` other than its ``Host`` is refused. A
  request authenticated by its ``Authorization`` header (a script, not a browser) needs no
  CSRF token: browsers never add that header by themselves.
- Behind a reverse proxy (:mod:`.paths`) that rewrites ``Host`` (``proxy_pass`` sends
  ``Host: 127.0.0.1:5555`` while the browser talks to ``ops.example.com``), a POST's
  ``Origin`` is the proxy's and its ``Host`` the dashboard's: the ``Origin`` is then accepted
  only if it is the configured public origin (``--public-origin``), and the CSRF token is
  still needed. Nothing a request says about itself (``X-Forwarded-Host``, ``Forwarded``) is
  trusted: a client can send those headers as well as a proxy. Without a token the public
  origin's host is accepted in ``Host`` too (a proxy that passes the browser's ``Host``). The
  session cookie's path is the root path, so that it goes nowhere else on the proxy's host.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import urllib.parse
from collections.abc import Iterable

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .paths import origin_of, route_path

COOKIE = "taskq_dashboard"
CSRF_HEADER = "x-csrf-token"
OPERATOR, VIEWER = "operator", "viewer"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Alpine.js evaluates its attribute expressions with new Function: 'unsafe-eval'.
CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; frame-ancestors 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin: Chromium sends "Origin: null" on the POSTs of a no-referrer page.
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CSP),
]


class Guard:
    """The token, the Host header, the CSRF token and security headers (see the module doc)."""

    def __init__(
        self, *, token: str | None, hosts: Iterable[str], secret: str,
        viewer_token: str | None = None, origins: Iterable[str] = (),
    ) -> None:  # fmt: skip
        self.token = token
        self.session = _derive(token, "session") if token else None
        # (token, cookie value, role): who a request is, by the token or cookie it shows.
        self.roles: list[tuple[str, str, str]] = []
        if token:
            self.roles.append((token, _derive(token, "session"), OPERATOR))
        if token and viewer_token:
            self.roles.append((viewer_token, _derive(viewer_token, "viewer-session"), VIEWER))
        # Public origins (a reverse proxy's): trusted in Origin, their hosts in Host.
        self.origins = frozenset(o for o in map(origin_of, origins) if o)
        public = {urllib.parse.urlsplit(o).hostname or "" for o in self.origins}
        self.hosts = None if token else {h.lower() for h in [*hosts, *public]} | LOOPBACK_HOSTS
        self.secret = secret
        self.csrf = _derive(secret, "csrf")

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind this guard."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            refusal = self._refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return

            async def with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *HEADERS]
                await send(message)

            await app(scope, receive, with_headers)

        return guarded

    def _refusal(self, request: Request) -> Response | None:
        """The response that refuses ``request``, or None to let it through."""
        if self.hosts is not None and _host_of(request) not in self.hosts:
            return PlainTextResponse("unexpected Host header", status_code=400)
        if self.token is None:
            return None
        state = request.scope.setdefault("state", {})
        bearer = request.headers.get("authorization", "")
        cookie, given = request.cookies.get(COOKIE, ""), request.query_params.get("token")
        for token, session, role in self.roles:
            if bearer.startswith("Bearer ") and _same(bearer[7:], token):
                state["bearer"], state["role"] = True, role
                return None
            if _same(cookie, session):
                state["role"] = role
                return None
            if given is not None and _same(given, token):
                return _login(request.url, session, request.scope.get("root_path", ""))
        return _unauthorized(request)

    def may_act(self, request: Request) -> bool:
        """Whether ``request`` may act (the operator's; without tokens, anyone's)."""
        return str(request.scope.get("state", {}).get("role", OPERATOR)) == OPERATOR

    def sign(self, text: str) -> str:
        """The signature that shows ``text`` came from this dashboard (its notices)."""
        return _derive(self.secret, "notice:" + text)

    def signed(self, text: str, signature: str) -> bool:
        """Whether ``signature`` is this dashboard's for ``text``."""
        return _same(signature, self.sign(text))

    def csrf_ok(self, request: Request, supplied: str | None) -> bool:
        """Whether a POST may act: authenticated by its header, or carrying the CSRF token
        from a page of this dashboard (and no foreign Origin)."""
        if self.foreign_origin(request):
            return False
        if request.scope.get("state", {}).get("bearer"):
            return True
        return supplied is not None and _same(supplied, self.csrf)

    def foreign_origin(self, request: Request) -> str | None:
        """The ``Origin`` of ``request`` if it is neither its ``Host`` nor a public origin
        (the request is then refused), else None."""
        origin = request.headers.get("origin")
        if not origin or urllib.parse.urlsplit(origin).netloc == request.headers.get("host"):
            return None
        return None if origin_of(origin) in self.origins else origin


def _login(url: URL, session: str, root_path: str) -> Response:
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(url.query) if k != "token"]
    )
    response = RedirectResponse(url.path + (f"?{query}" if query else ""), status_code=303)
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", path=root_path or "/")
    return response


def new_secret() -> str:
    """A new random secret for :class:`Guard`."""
    return secrets.token_urlsafe(32)


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _host_of(request: Request) -> str:
    host = request.headers.get("host", "").lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _unauthorized(request: Request) -> Response:
    browser = "text/html" in request.headers.get("accept", "")
    if route_path(request.scope).startswith("/api/") or not browser:
        return JSONResponse(
            {"error": "token required: Authorization: Bearer TOKEN, or ?token=TOKEN once"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    return PlainTextResponse(
        "This taskq dashboard needs its token: open it once with ?token=TOKEN.",
        status_code=401, headers={"WWW-Authenticate": "Bearer"},
    )  # fmt: skip
