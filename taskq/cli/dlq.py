"""``taskq dlq list|replay|purge QUEUE`` and ``taskq purge QUEUE``.

QUEUE is the short queue name (``default``), not the full ``{prefix}.q.default``. Purging asks
for confirmation on a terminal unless ``--yes``; without a terminal (a pipe, CI) it refuses
rather than wait for an answer that never comes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .. import dlq
from ..app import App
from ..settings import check_queue_name
from ..topology import routes
from . import tables
from .common import ExitCode, UsageError

COLUMNS = ("TASK ID", "NAME", "REASON", "ATTEMPTS", "DEAD AT (UTC)", "ERROR")
ERROR_WIDTH = 80


def register(sub: Any) -> None:
    """Add ``dlq`` (with list, replay, purge) and ``purge`` to the ``taskq`` subcommands."""
    group: argparse.ArgumentParser = sub.add_parser(
        "dlq", help="list, replay or purge a queue's dead-letter queue"
    )
    actions = group.add_subparsers(dest="dlq_command", required=True)

    listing = actions.add_parser("list", help="show what is in QUEUE's .dead queue")
    listing.add_argument("queue")
    listing.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    listing.set_defaults(run=run_list)

    again = actions.add_parser("replay", help="send dead messages back to the work queue")
    again.add_argument("queue")
    which = again.add_mutually_exclusive_group()
    which.add_argument("--id", action="append", default=[], dest="ids", metavar="ID")
    which.add_argument("--all", action="store_true", help="every message (with --reason: those)")
    again.add_argument("--reason", help="only messages dead-lettered for this reason")
    again.set_defaults(run=run_replay)

    purge_dead = actions.add_parser("purge", help="delete everything in QUEUE's .dead queue")
    purge_dead.add_argument("queue")
    purge_dead.add_argument("--yes", "-y", action="store_true", help="do not ask")
    purge_dead.set_defaults(run=run_purge_dead)

    purge = sub.add_parser("purge", help="delete every ready message of a work queue")
    purge.add_argument("queue")
    purge.add_argument("--yes", "-y", action="store_true", help="do not ask")
    purge.set_defaults(run=run_purge)


# -- pure formatting -------------------------------------------------------------------------


def _cell_error(dead: dlq.DeadMessage) -> str:
    first_line = dead.error.splitlines()[0] if dead.error else ""
    if len(first_line) > ERROR_WIDTH:
        return first_line[: ERROR_WIDTH - 3] + "..."
    return first_line


def table_rows(entries: Sequence[dlq.DeadMessage]) -> list[tuple[str, ...]]:
    """One row of cells per dead message, in COLUMNS order."""
    return [
        (
            dead.task_id,
            dead.task_name,
            dead.reason,
            "" if dead.attempts is None else str(dead.attempts),
            dead.dead_at.strftime("%Y-%m-%d %H:%M:%S") if dead.dead_at else "",
            _cell_error(dead),
        )
        for dead in entries
    ]


def format_table(entries: Sequence[dlq.DeadMessage]) -> str:
    """An aligned table of dead messages, with a header line."""
    return tables.render(COLUMNS, table_rows(entries))


# -- confirmation ----------------------------------------------------------------------------


def _interactive() -> bool:
    stdin = sys.stdin
    if stdin is None or stdin.closed or os.environ.get("CI"):
        return False
    return stdin.isatty()


async def confirm(question: str, assume_yes: bool) -> None:
    """Return if the user says yes (or ``assume_yes``); raise UsageError otherwise.

    Without a terminal on stdin (a pipe, /dev/null, CI) nobody can answer: refuse at once.
    """
    if assume_yes:
        return
    if not _interactive():
        raise UsageError(f"{question} needs confirmation and stdin is not a terminal: pass --yes")
    answer = await asyncio.to_thread(_ask, f"{question} [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was deleted")


def _ask(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    try:
        return sys.stdin.readline()
    except (OSError, ValueError):
        return ""


# -- commands --------------------------------------------------------------------------------


async def _depth(app: App, full_name: str) -> int:
    depth = await app.transport.queue_depth(full_name)
    if depth is None:
        raise UsageError(f"queue {full_name} does not exist (check the queue name and prefix)")
    return depth.messages


async def run_list(app: App, args: argparse.Namespace) -> int:
    """``taskq dlq list QUEUE [--json]``."""
    queue = check_queue_name(args.queue)
    await _depth(app, app.names.dead_queue(queue))
    entries = await dlq.list_dead(app.transport, queue)
    if args.json:
        print(json.dumps([dead.as_json() for dead in entries], indent=2))
    else:
        print(format_table(entries))
        print(f"{len(entries)} message(s) in {app.names.dead_queue(queue)}")
    return ExitCode.OK


async def run_replay(app: App, args: argparse.Namespace) -> int:
    """``taskq dlq replay QUEUE [--id ID ... | --all] [--reason R]``."""
    queue = check_queue_name(args.queue)
    select = dlq.selector(args.ids, args.reason, everything=args.all)
    await _depth(app, app.names.dead_queue(queue))
    replayed = await dlq.replay(app.sender, queue, select)
    for dead in replayed:
        print(f"replayed {dead.task_id} ({dead.task_name}, {dead.reason})")
    print(f"replayed {len(replayed)} message(s) to {app.names.work_queue(queue)}")
    missing = set(args.ids) - {dead.task_id for dead in replayed}
    if missing:
        print(f"not found: {', '.join(sorted(missing))}", file=sys.stderr)
        return ExitCode.CRASHED
    return ExitCode.OK


async def run_purge_dead(app: App, args: argparse.Namespace) -> int:
    """``taskq dlq purge QUEUE [--yes]``."""
    dead = app.names.dead_queue(check_queue_name(args.queue))
    return await _purge(app, dead, [dead], args.yes)


async def run_purge(app: App, args: argparse.Namespace) -> int:
    """``taskq purge QUEUE [--yes]``: the work queue, every partition of a partitioned one
    (unacked deliveries are not touched)."""
    queue = check_queue_name(args.queue)
    full = [app.names.work_queue(r) for r in routes(queue, app.settings.partitions_of(queue))]
    shown = full[0] if len(full) == 1 else f"{app.names.work_queue(queue)} ({len(full)} partitions)"
    return await _purge(app, shown, full, args.yes)


async def _purge(app: App, shown: str, full_names: list[str], yes: bool) -> int:
    count = sum([await _depth(app, full_name) for full_name in full_names])
    await confirm(f"delete {count} ready message(s) from {shown}?", yes)
    purged = sum([await app.transport.purge(full_name) for full_name in full_names])
    print(f"purged {purged} message(s) from {shown}")
    return ExitCode.OK
