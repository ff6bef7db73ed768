"""``taskq send NAME [ARGS...]``: send a task by name from the shell."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ..app import App
from .common import ExitCode, UsageError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "send", help="send a task by name; arguments are JSON values"
    )
    parser.add_argument("task")
    parser.add_argument("args", nargs="*", help="positional arguments, each a JSON value")
    parser.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    parser.add_argument("--queue")
    parser.add_argument("--priority", type=int)
    parser.add_argument("--countdown", type=float)
    parser.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the result")
    parser.set_defaults(run=run)


def _json_values(raw: Sequence[str]) -> list[Any]:
    values = []
    for text in raw:
        try:
            values.append(json.loads(text))
        except json.JSONDecodeError:
            values.append(text)  # a bare word is a string
    return values


async def run(app: App, args: argparse.Namespace) -> int:
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs is not JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise UsageError("--kwargs must be a JSON object")
    call = app.named(args.task).options(
        queue=args.queue, priority=args.priority, countdown=args.countdown
    )
    handle = await call.delay(*_json_values(args.args), **kwargs)
    print(handle.id)
    if args.wait is not None:
        print(json.dumps(await handle.result(timeout=args.wait), default=str))
    return ExitCode.OK
