"""``taskq cancel ID...``: cancel tasks wherever they are (see docs/guide/cancellation.md).

Prints one line per task: its ID and its status after the cancel (``CANCELLED``, the
terminal status it had reached first, or ``revoked`` where the result store cannot tell:
the AMQP store, for tasks another process sent). ``--wait`` waits until running tasks have
stopped; exit code 1 if one still ran at ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..app import App
from ..cancel.client import DEFAULT_WAIT, CancelResult
from .common import ExitCode


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "cancel", help="cancel tasks by ID: queued or delayed ones never run, running ones stop"
    )
    parser.add_argument("task_ids", nargs="+", metavar="ID", help="task IDs to cancel")
    parser.add_argument("--reason", default="", help="why (recorded with CANCELLED)")
    parser.add_argument("--wait", action="store_true", help="return once running tasks stopped")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_WAIT, help="seconds --wait waits at most"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=run)


def describe(result: CancelResult) -> dict[str, Any]:
    """One cancel's outcome as JSON-ready data."""
    return {
        "task_id": result.task_id,
        "status": result.status.value if result.status is not None else "revoked",
        "stopped_on": list(result.stopped_on),
        "stopped": result.stopped,
        "reached": result.reached,
    }


async def run(app: App, args: argparse.Namespace) -> int:
    results = [
        await app.cancel(task_id, reason=args.reason, wait=args.wait, timeout=args.timeout)
        for task_id in args.task_ids
    ]
    rows = [describe(result) for result in results]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            where = f" (stopped on {', '.join(row['stopped_on'])})" if row["stopped_on"] else ""
            late = "" if row["stopped"] else " (still running at the timeout)"
            unheard = "" if row["reached"] else " (not every worker acknowledged it in time)"
            print(f"{row['task_id']}  {row['status']}{where}{late}{unheard}")
    return ExitCode.OK if all(r.stopped for r in results) else ExitCode.CRASHED
