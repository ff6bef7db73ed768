"""``taskq queues``: ready, unacked and consumers of every taskq queue.

Two sources, and the output says which one it used (see :mod:`taskq.queue_depths`): the
RabbitMQ management HTTP API when the plugin is enabled (every queue of the prefix, with
unacked counts), otherwise passive declares of the queues taskq knows about: the App's queues
(``--app``), the default queue, ``--queue`` names, their ``.dead`` queues and the delay
levels. Taskq never enables the plugin itself.

A partitioned queue shows as one row under its logical name (counts summed, consumers the
fewest of any partition); ``--partitions`` adds a row per partition beneath it, and
``--json`` always has them under ``partitions``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..app import App
from ..queue_depths import MANAGEMENT_PORT, depths
from . import tables
from .common import ExitCode


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
    parser.add_argument(
        "--partitions", action="store_true", help="a row per partition of partitioned queues"
    )
    parser.set_defaults(run=run)


def app_queues(app: App, extra: list[str]) -> set[str]:
    """The short names of the work queues ``app`` knows: the default, its tasks', ``extra``."""
    return {app.settings.default_queue, *extra, *(t.config.queue for t in app.tasks.values())}


async def run(app: App, args: argparse.Namespace) -> int:
    found = await depths(
        app.transport, app.settings.broker, app_queues(app, args.queue),
        api_url=args.management_url,
    )  # fmt: skip
    rows, source = found.rows, found.source
    delay = f"{app.names.prefix}.delay."
    if not args.all:
        rows = [r for r in rows if not r["name"].startswith(delay) or r["ready"] or r["unacked"]]
    if args.json:
        print(json.dumps({"source": source, "queues": rows}, indent=2))
        return ExitCode.OK
    print(
        tables.render(
            ["QUEUE", "READY", "UNACKED", "CONSUMERS"],
            [line for r in rows for line in _lines(r, args.partitions)],
        )
    )
    print(f"source: {source}")
    return ExitCode.OK


def _lines(row: dict[str, Any], partitions: bool) -> list[tuple[Any, ...]]:
    """The table line of a row, with one line per partition beneath it if asked."""
    parts = row.get("partitions")
    name = row["name"] if parts is None else f"{row['name']} ({len(parts)} partitions)"
    lines: list[tuple[Any, ...]] = [(name, row["ready"], row["unacked"], row["consumers"])]
    if partitions and parts:
        lines += [(f"  {p['name']}", p["ready"], p["unacked"], p["consumers"]) for p in parts]
    return lines
