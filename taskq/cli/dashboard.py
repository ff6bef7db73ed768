"""``taskq dashboard``: serve the web dashboard (taskq.dashboard, docs/operations/dashboard.md).

Needs the ``dashboard`` extra (``pip install 'taskq[dashboard]'``). Listens on 127.0.0.1:5555
by default; on any other address it refuses to start without ``--token`` (exit 2). Stops
cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .. import control
from ..app import App
from ..exceptions import ConfigurationError
from .common import ExitCode, UsageError
from .logs import setup_logging

TOKEN_ENV = "TASKQ_DASHBOARD_TOKEN"
VIEWER_ENV = "TASKQ_DASHBOARD_VIEWER_TOKEN"
ROOT_PATH_ENV = "TASKQ_DASHBOARD_ROOT_PATH"
PUBLIC_ORIGIN_ENV = "TASKQ_DASHBOARD_PUBLIC_ORIGIN"
ROUTING_KEY_ENV = "TASKQ_PAGERDUTY_ROUTING_KEY"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dashboard", help="serve the web dashboard (live state, history, dead letters, alerts)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5555, help="port (0: any free port)")
    parser.add_argument("--token", help=f"require this token (default: ${TOKEN_ENV})")
    parser.add_argument(
        "--viewer-token",
        help=f"a read-only token: it sees everything and acts on nothing (default: ${VIEWER_ENV})",
    )
    parser.add_argument(
        "--root-path",
        metavar="PREFIX",
        help="serve under PREFIX behind a reverse proxy that strips it, such as /taskq "
        f"(default: ${ROOT_PATH_ENV})",
    )
    parser.add_argument(
        "--public-origin",
        metavar="ORIGIN",
        help="the scheme://host[:port] browsers use, behind a proxy that rewrites Host "
        f"(default: ${PUBLIC_ORIGIN_ENV})",
    )
    parser.add_argument("--history", type=Path, help="SQLite file of the task history")
    parser.add_argument("--history-days", type=float, default=7.0, help="keep tasks this long")
    parser.add_argument("--history-max", type=int, default=100_000, help="keep this many tasks")
    parser.add_argument(
        "--history-failures-days",
        type=float,
        default=30.0,
        help="keep failed, retried and dead-lettered tasks this long",
    )
    parser.add_argument(
        "--history-max-failures",
        type=int,
        default=100_000,
        help="keep this many failed, retried and dead-lettered tasks",
    )
    parser.add_argument("--queue", action="append", default=[], help="also watch this queue")
    parser.add_argument("--management-url", help="RabbitMQ management API base URL")
    parser.add_argument("--no-management", action="store_true", help="never ask the management API")
    parser.add_argument("--sample-interval", type=float, default=2.0, help="seconds")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    alerts = parser.add_argument_group("alerts (added to those of --alerts FILE)")
    alerts.add_argument("--alerts", type=Path, metavar="FILE",
                        help="alert rules (TOML), re-read when the file changes")  # fmt: skip
    alerts.add_argument("--webhook", metavar="URL", help="POST alert changes here as JSON")
    alerts.add_argument("--webhook-format", choices=["generic", "slack", "pagerduty"],
                        default="generic", help="the shape of --webhook's JSON")  # fmt: skip
    alerts.add_argument("--pagerduty-routing-key", metavar="KEY",
                        help=f"pagerduty's key (default: ${ROUTING_KEY_ENV})")  # fmt: skip
    alerts.add_argument("--alert-backlog", type=int, metavar="N",
                        help="a queue has more than N ready messages...")  # fmt: skip
    alerts.add_argument("--alert-backlog-for", type=float, default=60.0, metavar="SECONDS",
                        help="...for this long (default 60)")  # fmt: skip
    alerts.add_argument("--alert-dead-letters", action="store_true",
                        help="a dead-letter queue grew")  # fmt: skip
    alerts.add_argument("--alert-no-consumer", type=float, metavar="SECONDS",
                        help="ready messages and no consumer for this long")  # fmt: skip
    alerts.add_argument("--alert-failure-rate", type=float, metavar="PERCENT",
                        help="more than PERCENT %% of tasks failed in 5 minutes")  # fmt: skip
    alerts.add_argument("--alert-worker-missing", action="store_true",
                        help="a worker went away without stopping")  # fmt: skip
    parser.set_defaults(run=run, check=check)


def alert_flags(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The alert rules given as flags, as rule tables (the TOML file's form)."""
    rules: list[dict[str, Any]] = []
    if args.alert_backlog is not None:
        rules.append({"kind": "backlog", "ready": args.alert_backlog,
                      "for": args.alert_backlog_for})  # fmt: skip
    if args.alert_dead_letters:
        rules.append({"kind": "dead-letters"})
    if args.alert_no_consumer is not None:
        rules.append({"kind": "no-consumer", "for": args.alert_no_consumer})
    if args.alert_failure_rate is not None:
        rules.append({"kind": "failure-rate", "percent": args.alert_failure_rate})
    if args.alert_worker_missing:
        rules.append({"kind": "worker-missing"})
    return rules


def webhook_flag(args: argparse.Namespace) -> dict[str, Any] | None:
    """The webhook given as flags, as a webhook table (the TOML file's form)."""
    if not args.webhook:
        return None
    table: dict[str, Any] = {"url": args.webhook, "format": args.webhook_format}
    key = args.pagerduty_routing_key or os.environ.get(ROUTING_KEY_ENV)
    if args.webhook_format == "pagerduty" and key:
        table["routing_key"] = key
    return table


def check(args: argparse.Namespace, app: App) -> None:
    """Check the flags before anything connects; UsageError (exit 2) if they are wrong."""
    try:
        from ..dashboard.settings import DashboardSettings, load_alerts, parse_rules
    except ConfigurationError as exc:  # the dashboard extra is not installed
        raise UsageError(str(exc)) from None
    token = args.token or os.environ.get(TOKEN_ENV) or None
    history = args.history or control.state_file(
        "dashboard", app.settings.broker, app.names.prefix, ".sqlite3"
    )
    flags = alert_flags(args)
    try:
        args.settings = DashboardSettings(
            host=args.host, port=args.port, token=token, history_path=history,
            viewer_token=args.viewer_token or os.environ.get(VIEWER_ENV) or None,
            history_max_age=args.history_days * 86400, history_max_tasks=args.history_max,
            history_failures_max_age=args.history_failures_days * 86400,
            history_max_failures=args.history_max_failures,
            sample_interval=args.sample_interval, queues=tuple(args.queue),
            management_url=args.management_url, use_management=not args.no_management,
            alerts=load_alerts(args.alerts, flags, webhook_flag(args)),
            alerts_file=args.alerts, alert_flags=parse_rules(flags),
            root_path=args.root_path or os.environ.get(ROOT_PATH_ENV) or "",
            public_origin=args.public_origin or os.environ.get(PUBLIC_ORIGIN_ENV) or None,
        )  # fmt: skip
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc


async def run(app: App, args: argparse.Namespace) -> int:
    from ..dashboard.service import Dashboard

    setup_logging(args.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    root = args.settings.root_path
    behind = f"; pages link under {root}/, for a proxy that strips it" if root else ""

    def ready(url: str) -> None:
        print(f"taskq dashboard on {url} (Ctrl-C to stop{behind})", file=sys.stderr, flush=True)

    try:
        await Dashboard(app, args.settings).run(stop, on_ready=ready)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return ExitCode.OK
