"""``taskq doctor``: check the broker, the cluster and the App's queues; say what to fix.

Exit codes (its own, see taskq.doctor.findings): 0 healthy (warnings allowed unless
``--strict``), 1 a check failed, 3 neither the broker nor its management API answered; 2, as
for every command, bad flags or an App that cannot be imported. See
docs/operations/doctor.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any

from ..app import App
from ..doctor import Options, diagnose, exit_code, expected_of, gather
from ..doctor.findings import Finding, Status
from ..queue_depths import MANAGEMENT_PORT
from ..redact import redact_url
from . import tables
from .common import UsageError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check the broker, the cluster and the App's queues (exit 1 if unhealthy)"
    )
    parser.add_argument("--json", action="store_true", help="[{check, status, detail, data}]")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument(
        "--queue", action="append", default=[], help="also check this work queue (repeatable)"
    )
    parser.add_argument(
        "--management-url", action="append", default=[], metavar="URL",
        help=f"management API base URL, repeatable or comma-separated, tried in order "
        f"(default: each broker host, port {MANAGEMENT_PORT})",
    )  # fmt: skip
    parser.add_argument(
        "--interval", type=float, metavar="SECONDS",
        help="count the dead-letter queues twice this far apart to see them grow",
    )  # fmt: skip
    parser.add_argument(
        "--node", help="RabbitMQ node that `rabbitmqctl -n` asks for consumer_timeout "
        "(default: the management API's node)",
    )  # fmt: skip
    parser.add_argument(
        "--consumer-timeout", type=int, metavar="MS",
        help="the brokers' consumer_timeout in ms, if you know it (0: disabled); not asked then",
    )  # fmt: skip
    parser.add_argument(
        "--rabbitmqctl", metavar="COMMAND",
        help="how to run rabbitmqctl, e.g. 'sudo -u rabbitmq rabbitmqctl' (default: on the PATH)",
    )  # fmt: skip
    parser.set_defaults(run=run, check=check, opens_app=False)


def check(args: argparse.Namespace, app: App) -> None:
    """Refuse bad flags before anything connects (exit 2)."""
    if args.interval is not None and not 0 < args.interval <= 600:
        raise UsageError("--interval must be between 0 and 600 seconds")
    if args.consumer_timeout is not None and args.consumer_timeout < 0:
        raise UsageError("--consumer-timeout must be 0 (disabled) or more")


async def run(app: App, args: argparse.Namespace) -> int:
    """Gather, check, print; the App is not opened (the doctor makes its own connection and
    reports a broker that does not answer instead of failing on it)."""
    urls = [u.strip() for given in args.management_url for u in given.split(",") if u.strip()]
    command = tuple(shlex.split(args.rabbitmqctl)) if args.rabbitmqctl else ()
    options = Options(tuple(urls), args.interval, args.node, args.consumer_timeout, command)
    expected = expected_of(app, args.queue)
    snapshot = await gather(app.settings, expected, options)
    findings = diagnose(snapshot, expected)
    code = exit_code(findings, strict=args.strict, reachable=snapshot.reachable)
    print(render_json(findings) if args.json else render_table(findings, code))
    return code


def render_json(findings: list[Finding]) -> str:
    """The findings as a JSON list (passwords in URLs redacted)."""
    return redact_url(json.dumps([f.as_json() for f in findings], indent=2, default=str))


def render_table(findings: list[Finding], code: int) -> str:
    """A CHECK / STATUS / DETAIL table, then one line with the verdict."""
    table = tables.render(
        ["CHECK", "STATUS", "DETAIL"], [(f.check, str(f.status), f.detail) for f in findings]
    )
    failed = sum(f.status is Status.FAIL for f in findings)
    warned = sum(f.status is Status.WARN for f in findings)
    verdict = {0: "healthy", 1: "unhealthy", 3: "unreachable"}.get(code, "unhealthy")
    return redact_url(f"{table}\n{verdict}: {failed} failed, {warned} warnings")
