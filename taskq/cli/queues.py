"""``taskq queues``: ready, unacked and consumers of every taskq queue.

Two sources, and the output says which one it used:

- the RabbitMQ management HTTP API (``/api/queues/{vhost}``), when the management plugin is
  enabled: every queue of the prefix, with unacked counts (the API's numbers are sampled, a
  few seconds old);
- otherwise passive declares of the queues taskq knows about: the App's queues (``--app``),
  the default queue, ``--queue`` names, their ``.dead`` queues and the delay levels. A passive
  declare tells ready messages and consumers, not unacked ones.

Taskq never enables the plugin itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..app import App
from ..redact import redact_url
from ..topology import DELAY_LEVELS
from . import tables
from .common import ExitCode

MANAGEMENT_PORT = 15672


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "queues", help="ready, unacked and consumers of every taskq queue"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--queue", action="append", default=[], help="also show this queue (repeatable)"
    )
    parser.add_argument(
        "--management-url",
        help=f"management API base URL (default: the broker's host, port {MANAGEMENT_PORT})",
    )
    parser.add_argument("--all", action="store_true", help="also list empty delay levels")
    parser.set_defaults(run=run)


def management_url(broker: str, explicit: str | None = None) -> tuple[str, str, str]:
    """``(base URL, vhost, 'user:password')`` of the management API of ``broker``."""
    url = urllib.parse.urlsplit(broker)
    vhost = urllib.parse.unquote(url.path[1:]) if len(url.path) > 1 else "/"
    user = urllib.parse.unquote(url.username or "guest")
    password = urllib.parse.unquote(url.password or "guest")
    base = explicit or f"http://{url.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}"
    return base.rstrip("/"), vhost, f"{user}:{password}"


def _fetch(base: str, vhost: str, credentials: str) -> list[dict[str, Any]]:
    path = "/api/queues/" + urllib.parse.quote(vhost, safe="")
    query = "?columns=name,messages_ready,messages_unacknowledged,consumers"
    request = urllib.request.Request(base + path + query)
    token = base64.b64encode(credentials.encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=3) as response:
        data = json.loads(response.read())
    if not isinstance(data, list):
        raise ValueError("unexpected answer from the management API")
    return data


def from_api(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The taskq queues of ``prefix`` among the management API's queue rows."""
    wanted = (f"{prefix}.q.", f"{prefix}.delay.")
    return [
        {
            "name": row["name"],
            "ready": row.get("messages_ready"),
            "unacked": row.get("messages_unacknowledged"),
            "consumers": row.get("consumers"),
        }
        for row in sorted(rows, key=lambda r: _order(str(r.get("name")), prefix))
        if str(row.get("name", "")).startswith(wanted)
    ]


def _order(name: str, prefix: str) -> tuple[int, int, str]:
    delay = f"{prefix}.delay."
    if name.startswith(delay) and name[len(delay):].isdigit():
        return (1, int(name[len(delay):]), name)
    return (0, 0, name)


def known_queues(app: App, extra: list[str]) -> list[str]:
    """Full names of the queues taskq knows about without the management API."""
    names = app.names
    short = {app.settings.default_queue, *extra}
    short.update(task.config.queue for task in app.tasks.values())
    full = []
    for queue in sorted(short):
        full += [names.work_queue(queue), names.dead_queue(queue)]
    return full + [names.delay_level(level) for level in range(DELAY_LEVELS)]


async def from_declares(app: App, extra: list[str]) -> list[dict[str, Any]]:
    """Depths of the known queues by passive declares (queues that do not exist are left out)."""
    rows = []
    for name in known_queues(app, extra):
        depth = await app.transport.queue_depth(name)
        if depth is not None:
            rows.append(
                {"name": name, "ready": depth.messages, "unacked": None,
                 "consumers": depth.consumers}
            )
    return rows


async def run(app: App, args: argparse.Namespace) -> int:
    base, vhost, credentials = management_url(app.settings.broker, args.management_url)
    try:
        api_rows = await asyncio.to_thread(_fetch, base, vhost, credentials)
        rows = from_api(api_rows, app.names.prefix)
        source = f"management API ({redact_url(base)})"
    except (OSError, ValueError, urllib.error.URLError) as exc:
        rows = await from_declares(app, args.queue)
        source = f"passive declares (management API not available: {_reason(exc)})"
    delay = f"{app.names.prefix}.delay."
    if not args.all:
        rows = [r for r in rows if not r["name"].startswith(delay) or r["ready"] or r["unacked"]]
    if args.json:
        print(json.dumps({"source": source, "queues": rows}, indent=2))
        return ExitCode.OK
    print(tables.render(
        ["QUEUE", "READY", "UNACKED", "CONSUMERS"],
        [(r["name"], r["ready"], r["unacked"], r["consumers"]) for r in rows],
    ))
    print(f"source: {source}")
    return ExitCode.OK


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)
