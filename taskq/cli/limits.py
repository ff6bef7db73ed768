"""``taskq control rate-limit|concurrency-limit|limits``: change a task's limits at runtime,
for every worker (see docs/guide/rate-limits.md).

``taskq control rate-limit TASK 50/s`` (or ``off``, or ``default``: what the code declares),
``taskq control concurrency-limit TASK 5`` (same words), ``taskq control limits`` (the
changes in force). A change reaches running workers within milliseconds and every worker
started later (it is kept on the broker, in the ``{prefix}.limits`` stream).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..app import App
from ..limits.changes import LimitChange, changes_made, publish_change
from .common import ExitCode, UsageError


def register(commands: Any) -> None:
    """Add the limit commands to ``taskq control``'s subcommands."""
    rate = commands.add_parser("rate-limit", help="starts per second/minute/hour: 50/s, off")
    rate.add_argument("task", help="the task's name")
    rate.add_argument("limit", help="COUNT/s, COUNT/m, COUNT/h, off, or default (the code's)")
    rate.set_defaults(run=run_change, check=check_change, kind="rate")
    concurrency = commands.add_parser(
        "concurrency-limit", help="runs at once per key: a count, off"
    )
    concurrency.add_argument("task", help="the task's name")
    concurrency.add_argument("limit", help="a count >= 1, off, or default (the code's)")
    concurrency.set_defaults(run=run_change, check=check_change, kind="concurrency")
    shown = commands.add_parser("limits", help="the limits changed at runtime")
    shown.add_argument("--json", action="store_true", help="machine-readable output")
    shown.set_defaults(run=run_show)


def change_of(args: argparse.Namespace) -> LimitChange:
    """The change the command line asks for; ConfigurationError if malformed."""
    if args.kind == "rate":
        return LimitChange(args.task, rate=args.limit)
    limit = args.limit
    return LimitChange(args.task, concurrency=int(limit) if limit.isdigit() else limit)


def check_change(args: argparse.Namespace, app: App) -> None:
    change_of(args)
    if app.tasks and args.task not in app.tasks:
        raise UsageError(f"no task named {args.task!r} in {app.name!r}")


async def run_change(app: App, args: argparse.Namespace) -> int:
    change = change_of(args)
    await publish_change(app.transport, app.names, change)
    print(f"{args.kind} limit of {args.task}: {args.limit} (every worker, within seconds)")
    return ExitCode.OK


async def run_show(app: App, args: argparse.Namespace) -> int:
    made = await changes_made(app.transport, app.names, app.settings.publish_timeout)
    rows = [change.as_json() for change in sorted(made.values(), key=lambda c: c.task)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"{row['task']}  rate={row['rate'] or '-'}  concurrency={row['concurrency'] or '-'}"
            )
    return ExitCode.OK
