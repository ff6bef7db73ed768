"""``taskq``: send tasks and look after queues from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..app import App
from ..exceptions import BrokerUnavailable, ConfigurationError, TaskqError
from .common import ExitCode, UsageError, load_app, run_loop


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskq", description="taskq administration")
    parser.add_argument(
        "--app", "-A", help="module:attribute of the App (else settings from TASKQ_*)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", help="send a task by name; arguments are JSON values")
    send.add_argument("task")
    send.add_argument("args", nargs="*", help="positional arguments, each a JSON value")
    send.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    send.add_argument("--queue")
    send.add_argument("--priority", type=int)
    send.add_argument("--countdown", type=float)
    send.add_argument(
        "--wait", type=float, metavar="SECONDS", help="wait for the result and print it"
    )

    sub.add_parser("version", help="print the taskq version")
    return parser


def _app_from(args: argparse.Namespace) -> App:
    return load_app(args.app) if args.app else App("taskq-cli")


def _json_values(raw: Sequence[str]) -> list[Any]:
    values = []
    for text in raw:
        try:
            values.append(json.loads(text))
        except json.JSONDecodeError:
            values.append(text)  # a bare word is a string
    return values


async def _send(app: App, args: argparse.Namespace) -> int:
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--kwargs is not JSON: {exc}") from None
    async with app:
        call = app.named(args.task).options(
            queue=args.queue, priority=args.priority, countdown=args.countdown
        )
        handle = await call.delay(*_json_values(args.args), **kwargs)
        print(handle.id)
        if args.wait is not None:
            print(json.dumps(await handle.result(timeout=args.wait), default=str))
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        from .. import __version__

        print(__version__)
        return ExitCode.OK
    try:
        app = _app_from(args)
        return run_loop(_send(app, args))
    except (UsageError, ConfigurationError) as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokerUnavailable as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return ExitCode.BROKER_UNREACHABLE
    except TaskqError as exc:
        print(f"taskq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.CRASHED
    except KeyboardInterrupt:
        return ExitCode.CRASHED


if __name__ == "__main__":
    sys.exit(main())
