"""``taskq --app module:app beat``: run a periodic scheduler. ``taskq beat list`` (and
``taskq inspect periodic``): each entry's schedule, next tick and last fired tick, and which
scheduler is active.

Any number of schedulers may run for one App (and ``taskq-worker --beat`` embeds one in a
worker): one is active, the others stand by (see docs/operations/periodic.md). SIGTERM or
SIGINT stops a scheduler at once, and the next one in line takes over.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import socket
from typing import Any

from ..app import App
from ..periodic import Scheduler
from ..periodic.status import read_status
from . import tables
from .common import ExitCode, UsageError
from .logs import setup_logging


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "beat", help="run a periodic scheduler (any number may run), or list the entries"
    )
    parser.add_argument("action", nargs="?", choices=["run", "list"], default="run")
    parser.add_argument("--name", help="scheduler name (default: app-beat@host.pid)")
    parser.add_argument("--json", action="store_true", help="list: machine-readable output")
    parser.add_argument(
        "--log-level", "-l", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.set_defaults(run=run_beat)


def scheduler_for(app: App, name: str | None = None) -> Scheduler:
    """A Scheduler of ``app``'s periodic entries (UsageError if it has none)."""
    if not app.periodic_entries:
        raise UsageError(f"App {app.name!r} has no periodic entries (@app.periodic)")
    return Scheduler(
        app.periodic_entries,
        app.names,
        name=name or f"{app.name}-beat@{socket.gethostname()}.{os.getpid()}",
    )


async def run_beat(app: App, args: argparse.Namespace) -> int:
    if args.action == "list":
        return await run_list(app, args)
    scheduler = scheduler_for(app, args.name)
    setup_logging(args.log_level, args.log_format)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.stop)
    await scheduler.run(app.sender)
    return ExitCode.OK


async def run_list(app: App, args: argparse.Namespace) -> int:
    """Print the entries and the active scheduler (``--json``: as one JSON object)."""
    status = await read_status(app.transport, app.names, app.periodic_entries,
                               dt.datetime.now(dt.UTC))  # fmt: skip
    if args.json:
        print(json.dumps(status, indent=2))
        return ExitCode.OK
    active = status["active"]
    if active is None:
        print(f"no scheduler is running ({status['schedulers']} connected)")
    else:
        where = f" on {active['host']}" if active["host"] else ""
        print(f"active scheduler: {active['scheduler']}{where} (since {active['since']}, last "
              f"wrote {active['last_write']}; {status['schedulers']} running)")  # fmt: skip
    rows = [
        (e["name"], e["queue"], e["schedule"], e["catch_up"], e["next_tick"], e["last_fired"])
        for e in status["entries"]
    ]
    if rows:
        print(tables.render(
            ["ENTRY", "QUEUE", "SCHEDULE", "CATCH UP", "NEXT TICK (UTC)", "LAST FIRED (UTC)"], rows
        ))  # fmt: skip
    else:
        print("no periodic entries (pass --app module:app)")
    return ExitCode.OK
