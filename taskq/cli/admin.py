"""``taskq``: send tasks and look after queues from the command line.

Each command group lives in its own module with ``register(subparsers)``; a registered
subcommand sets ``run``, an ``async def run(app, args) -> int`` called with the App open (or
not opened, if it sets ``opens_app=False``), and may set ``check``, a ``check(args, app)``
called before the App connects (bad flags then exit 2 without touching the broker).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..app import App
from ..exceptions import BrokerUnavailable, ConfigurationError, InvalidArguments, TaskqError
from ..redact import install_log_redaction
from . import beat, cancel, dashboard, dlq, doctor, events, inspect, queues, send
from .common import ExitCode, UsageError, broker_exit_code, load_app, run_loop

COMMAND_MODULES = [send, cancel, dlq, inspect, queues, events, beat, dashboard, doctor]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskq",
        description="taskq administration",
        epilog="exit codes: 0 ok, 1 failed, 2 usage or import error, 3 broker unreachable",
    )
    parser.add_argument(
        "--app", "-A", help="module:attribute of the App (default: settings from TASKQ_*)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the taskq version")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _app_from(args: argparse.Namespace) -> App:
    return load_app(args.app) if args.app else App("taskq-cli")


async def _run(app: App, args: argparse.Namespace) -> int:
    if not getattr(args, "opens_app", True):  # the command makes its own connections
        return int(await args.run(app, args))
    async with app:
        return int(await args.run(app, args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The commands print their output and leave logging unconfigured (warnings reach stderr
    # through Python's last-resort handler): only the redaction is installed.
    install_log_redaction()
    if args.command == "version":
        from .. import __version__

        print(__version__)
        return ExitCode.OK
    try:
        app = _app_from(args)
        check = getattr(args, "check", None)
        if check is not None:
            check(args, app)
        return run_loop(_run(app, args))
    except (UsageError, ConfigurationError, InvalidArguments) as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokerUnavailable as exc:
        print(f"taskq: {exc}", file=sys.stderr)
        return broker_exit_code(exc)
    except TaskqError as exc:
        print(f"taskq: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitCode.CRASHED
    except KeyboardInterrupt:
        return ExitCode.CRASHED


if __name__ == "__main__":
    sys.exit(main())
