"""How full a prefix's queues are: ready, unacked and consumers of each, from one of two sources.

- the RabbitMQ management HTTP API (``/api/queues/{vhost}``), when the management plugin is
  enabled: every queue of the prefix, with unacked counts (the API's numbers are sampled, a
  few seconds old);
- otherwise passive declares of the queues taskq knows about (work queues, their ``.dead``
  and hold queues, the delay levels). A passive declare tells ready messages and consumers, not
  unacked ones (``unacked`` is None).

The partitions of a partitioned queue (``{p}.q.orders.0`` ...) come back as one row of the
logical queue (``{p}.q.orders``): ready and unacked summed, consumers the fewest any
partition has (a partition nobody consumes is what an operator must see), and the rows of
the partitions under ``partitions``.

Taskq never enables the plugin itself. Used by ``taskq queues`` and the dashboard.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from .redact import redact_url
from .topology import Names, delay_queue_names, routes, split_route
from .transport import Transport, split_urls

MANAGEMENT_PORT = 15672
API_TIMEOUT = 3.0


@dataclasses.dataclass(frozen=True, slots=True)
class Depths:
    """Rows of ``{name, ready, unacked, consumers}`` and which source they came from."""

    rows: list[dict[str, Any]]
    source: str
    management: bool


def management_url(broker: str, explicit: str | None = None) -> tuple[str, str, str]:
    """``(base URL, vhost, 'user:password')`` of the management API of ``broker``."""
    url = urllib.parse.urlsplit(split_urls(broker)[0])  # on a cluster, any node answers
    vhost = urllib.parse.unquote(url.path[1:]) if len(url.path) > 1 else "/"
    user = urllib.parse.unquote(url.username or "guest")
    password = urllib.parse.unquote(url.password or "guest")
    base = explicit or f"http://{url.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}"
    return base.rstrip("/"), vhost, f"{user}:{password}"


def get_json(base: str, path: str, credentials: str) -> Any:
    """GET ``base + path`` of the management API and decode its JSON (blocking: run it in a
    thread). OSError or ValueError when it does not answer or answers something else."""
    request = urllib.request.Request(base + path)
    token = base64.b64encode(credentials.encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:
        return json.loads(response.read())


def vhost_path(collection: str, vhost: str) -> str:
    """``/api/{collection}/{vhost}``, the vhost quoted (``/`` is ``%2F``)."""
    return f"/api/{collection}/" + urllib.parse.quote(vhost, safe="")


def fetch(base: str, vhost: str, credentials: str) -> list[dict[str, Any]]:
    """The management API's queue rows of ``vhost`` (blocking: run it in a thread)."""
    query = "?columns=name,messages_ready,messages_unacknowledged,consumers"
    data = get_json(base, vhost_path("queues", vhost) + query, credentials)
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
    if name.startswith(delay) and name[len(delay) :].isdigit():
        return (1, int(name[len(delay) :]), name)
    return (0, 0, name)


def known_queues(
    names: Names, queues: Iterable[str], partitions: Mapping[str, int] | None = None
) -> list[str]:
    """Full names of the work queues ``queues`` (short names; each partition of those in
    ``partitions``), their ``.dead`` and hold queues and the delay levels: what taskq knows
    about without the management API."""
    counts = partitions or {}
    full = []
    for queue in sorted(set(queues)):
        each = routes(queue, counts.get(queue, 1))
        full += [names.work_queue(route) for route in each]
        full.append(names.dead_queue(queue))
        full += [names.hold_queue(route) for route in each]
    return full + delay_queue_names(names, legacy=True)


def by_logical_queue(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """``rows`` with the partitions of each partitioned work queue folded into one row of the
    logical queue (see the module doc), in the place of its first partition."""
    work = f"{prefix}.q."
    merged: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = str(row["name"])
        queue, partition = split_route(name[len(work) :]) if name.startswith(work) else ("", None)
        if partition is None:
            merged.append(row)
            continue
        group = groups.get(queue)
        if group is None:
            group = groups[queue] = {"name": work + queue, "partitions": []}
            merged.append(group)
        group["partitions"].append({**row, "partition": partition})
    for group in groups.values():
        parts = sorted(group["partitions"], key=lambda r: r["partition"])
        group["partitions"] = parts
        group["ready"] = _sum(p["ready"] for p in parts)
        group["unacked"] = _sum(p["unacked"] for p in parts)
        consumers = [p["consumers"] for p in parts if p["consumers"] is not None]
        group["consumers"] = min(consumers) if consumers else None
    return merged


def _sum(values: Iterable[int | None]) -> int | None:
    """The sum, or None if any value is unknown."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


async def from_declares(transport: Transport, full_names: Iterable[str]) -> list[dict[str, Any]]:
    """Depths of these queues by passive declares (queues that do not exist are left out)."""
    rows = []
    for name in full_names:
        depth = await transport.queue_depth(name)
        if depth is not None:
            rows.append(
                {"name": name, "ready": depth.messages, "unacked": None,
                 "consumers": depth.consumers}
            )  # fmt: skip
    return rows


async def depths(
    transport: Transport,
    broker: str,
    queues: Iterable[str],
    *,
    api_url: str | None = None,
    use_api: bool = True,
) -> Depths:
    """The depths of the prefix's queues: from the management API if it answers (and
    ``use_api``), else by passive declares of the work queues ``queues`` (short names)."""
    names = transport.names
    source = "passive declares"
    if use_api:
        base, vhost, credentials = management_url(broker, api_url)
        try:
            api_rows = await asyncio.to_thread(fetch, base, vhost, credentials)
            api = f"management API ({redact_url(base)})"
            rows = by_logical_queue(from_api(api_rows, names.prefix), names.prefix)
            return Depths(rows, api, True)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            source = f"passive declares (management API not available: {api_error(exc)})"
    full_names = known_queues(names, queues, transport.options.partitions)
    rows = by_logical_queue(await from_declares(transport, full_names), names.prefix)
    return Depths(rows, source, False)


def api_error(exc: Exception) -> str:
    """Why a management API request failed, in a few words (no URL, so no password)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)
