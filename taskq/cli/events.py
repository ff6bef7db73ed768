"""``taskq events``: tail task and worker events live.

Binds an exclusive queue to ``{prefix}.events`` with the ``--filter`` topic pattern
(``task.*``, ``task.failed``, ``worker.#``; default ``#``, everything) and prints each event
as it arrives, until Ctrl-C / SIGTERM or ``--count`` events. Only events published while the
tail runs are seen (nothing is stored), and only from workers started with ``--events`` and
clients with ``events=True``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from typing import Any

from .. import events
from ..app import App
from . import tables
from .common import ExitCode

_SHOWN = (
    "task_id",
    "task",
    "queue",
    "attempt",
    "runtime",
    "reason",
    "error",
    "worker",
    "active",
    "processed",
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("events", help="tail task and worker events")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--filter", default="#", metavar="PATTERN", help="topic pattern, e.g. task.* (default #)"
    )
    parser.add_argument("--count", type=int, help="stop after N events")
    parser.set_defaults(run=run)


def format_event(event: dict[str, Any]) -> str:
    """One readable line: time, type, then the fields that say what happened."""
    parts = [tables.clock(event.get("time")) or "-", f"{event.get('type', '?'):<19}"]
    for key in _SHOWN:
        value = event.get(key)
        if value is None:
            continue
        if key == "runtime":
            value = tables.duration(float(value))
        parts.append(f"{key}={value}")
    return " ".join(parts)


async def run(app: App, args: argparse.Namespace) -> int:
    transport, exchange = app.transport, app.names.events
    stop = asyncio.Event()
    seen = 0

    async def on_event(kind: str | None, body: bytes) -> None:
        nonlocal seen
        if stop.is_set():
            return
        try:
            event = events.decode(body)
        except ValueError:
            event = {"type": kind, "error": "undecodable event"}
        print(json.dumps(event) if args.json else format_event(event), flush=True)
        seen += 1
        if args.count is not None and seen >= args.count:
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await transport.declare_exchange(exchange, "topic")
        queue = f"{app.names.prefix}.events-tail.{uuid.uuid4().hex}"
        await transport.consume_bound(queue, exchange, args.filter, on_event)
        print(
            f"listening to {exchange} ({args.filter}); Ctrl-C to stop", file=sys.stderr, flush=True
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return ExitCode.OK
