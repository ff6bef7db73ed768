"""Serving the dashboard under a sub-path behind a reverse proxy (``--root-path /taskq``).

The proxy takes ``/taskq/...`` from browsers and forwards ``/...`` (it strips the prefix, as
nginx's ``location /taskq/ { proxy_pass http://127.0.0.1:5555/; }`` does). :func:`under`
gives the application the ASGI scope the spec describes for that case, ``root_path`` the
prefix and ``path`` the prefix followed by the rest (what ``uvicorn --root-path`` does):
Starlette routes by the rest, and ``request.url`` carries the prefix.

Every address the dashboard writes carries the prefix:

- templates write ``{{ url('/tasks') }}``, never ``/tasks`` (the Jinja global set in
  :mod:`.web`); redirects go through ``Pages.url`` / ``Pages.back``;
- scripts and Alpine expressions write ``url('/api/...')`` (``static/app.js``, which reads
  the prefix from ``<meta name="taskq-root">``);
- a ``Location`` that Starlette makes absolute (its redirect to the address without a trailing
  slash) is made path-only here: its host would be the one the proxy sent, not the browser's.

What is trusted behind a proxy (see :mod:`.security`): never an ``X-Forwarded-*`` header (a
client can send one as well as a proxy); a POST's ``Origin`` must be the request's own
``Host`` or the configured public origin (``--public-origin``, the address browsers use).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ConfigurationError

SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
DEFAULT_PORTS = {"http": 80, "https": 443}


def root_path(text: str | None) -> str:
    """``text`` as a root path: ``""`` (none) or ``/a/b`` (a leading slash, no trailing
    one). ConfigurationError for anything but plain path segments: the prefix is written
    into every page."""
    segments = [s for s in (text or "").strip().split("/") if s]
    for segment in segments:
        if not SEGMENT.fullmatch(segment) or segment in {".", ".."}:
            raise ConfigurationError(
                f"invalid --root-path {text!r}: use plain path segments such as /taskq "
                "(letters, digits, '.', '_', '~', '-')"
            )
    return "".join("/" + s for s in segments)


def origin_of(url: str) -> str | None:
    """The origin of ``url`` as a browser sends it in ``Origin`` (``scheme://host[:port]``,
    lower case, no default port), or None if it is not an http(s) address."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")


def public_origin(text: str | None) -> str | None:
    """``text`` (``https://ops.example.com[:port]``) as a normalized origin, None if empty;
    ConfigurationError if it is not an origin (a path, a query or credentials in it)."""
    if not text:
        return None
    origin = origin_of(text)
    parts = urllib.parse.urlsplit(text.strip())
    if origin is None or parts.path not in ("", "/") or parts.query or "@" in parts.netloc:
        raise ConfigurationError(
            f"invalid --public-origin {text!r}: give the scheme, host and port browsers use, "
            "such as https://ops.example.com (the path goes in --root-path)"
        )
    return origin


def prefixed(root: str) -> Callable[[str], str]:
    """The function that turns a dashboard path (``/tasks``) into the address a browser asks
    for (``/taskq/tasks`` under ``root`` ``/taskq``)."""

    def url(path: str) -> str:
        return root + path

    return url


def route_path(scope: Scope) -> str:
    """The path of a request within the dashboard (without the root path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def under(root: str, app: ASGIApp) -> ASGIApp:
    """``app`` served under ``root`` by a proxy that strips it (``app`` itself if none)."""
    if not root:
        return app

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        scope = {**scope, "root_path": root, "path": root + scope["path"]}
        if scope.get("raw_path"):
            scope["raw_path"] = root.encode() + scope["raw_path"]
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")

        async def path_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, _local(v, host) if k.lower() == b"location" else v)
                    for k, v in message.get("headers", [])
                ]
            await send(message)

        await app(scope, receive, path_only)

    return mounted


def _local(location: bytes, host: str) -> bytes:
    """``location`` without its scheme and host when they are this request's own."""
    parts = urllib.parse.urlsplit(location.decode("latin-1"))
    if parts.scheme not in DEFAULT_PORTS or parts.netloc.lower() != host.lower():
        return location
    return urllib.parse.urlunsplit(("", "", parts.path, parts.query, parts.fragment)).encode(
        "latin-1"
    )
