"""``taskq inspect ping|active|reserved|scheduled|periodic|stats`` and ``taskq control shutdown``
(``taskq control``'s limit commands are in :mod:`.limits`).

Workers answer over the control plane (see :mod:`taskq.control` for how missing workers are
found). ``scheduled`` asks both: a delayed task waits in the broker's delay levels while its
due time is far off (more than a minute), then in a worker that holds it until due (see
taskq.delays). It shows how many messages each level queue holds and, with ``--peek N``,
reads up to N messages per level (basic.get, then requeued) to show their task and ETA
(peeking holds them for a moment; it does not change when they run); then what each worker
holds, soonest first, and what waits in the hold queues for a worker to take it.
``periodic`` is ``taskq beat list``: the periodic entries and the active scheduler.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .. import control
from ..app import App
from ..exceptions import DecodeError
from ..message import envelope_of
from ..registry import queues_of
from ..topology import delay_queue_ttls, logical_queue, queue_from_delay_key, routes
from ..transport import Delivery
from . import beat, limits, tables
from .common import ExitCode, UsageError

WORKER_COMMANDS = ("ping", "active", "reserved", "stats")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "inspect", help="ask running workers what they are doing"
    )
    parser.add_argument("what", choices=[*WORKER_COMMANDS, "scheduled", "periodic"])
    _common_options(parser)
    parser.add_argument(
        "--peek",
        type=int,
        default=0,
        metavar="N",
        help="scheduled: read up to N messages per delay level to show their ETA",
    )
    parser.set_defaults(run=run_inspect)
    ctl: argparse.ArgumentParser = sub.add_parser(
        "control", help="change workers: shutdown (graceful stop), rate and concurrency limits"
    )
    actions = ctl.add_subparsers(dest="action", required=True)
    shutdown = actions.add_parser("shutdown", help="stop one worker gracefully")
    _common_options(shutdown)
    shutdown.set_defaults(run=run_control)
    limits.register(actions)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for replies")
    parser.add_argument("--worker", help="ask only this worker")
    parser.add_argument("--expect", default="", help="comma-separated workers that should answer")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


async def _broadcast(app: App, command: str, args: argparse.Namespace) -> control.Result:
    expect = [w.strip() for w in args.expect.split(",") if w.strip()]
    return await control.broadcast(
        app, command, timeout=args.timeout, worker=args.worker, expect=expect
    )


async def run_inspect(app: App, args: argparse.Namespace) -> int:
    if args.what == "scheduled":
        return await _scheduled(app, args)
    if args.what == "periodic":
        return await beat.run_list(app, args)
    result = await _broadcast(app, args.what, args)
    if args.json:
        print(json.dumps(_as_json(result), indent=2, default=str))
    else:
        if result.replies:
            print(_RENDER[args.what](result.replies))
        _print_missing(result)
    if args.what == "ping" and (result.missing or not result.replies):
        return ExitCode.CRASHED
    return ExitCode.OK


async def run_control(app: App, args: argparse.Namespace) -> int:
    if not args.worker:
        raise UsageError("control shutdown needs --worker NAME (it never stops every worker)")
    result = await _broadcast(app, args.action, args)
    if args.json:
        print(json.dumps(_as_json(result), indent=2, default=str))
    elif result.replies:
        print(f"{args.worker}: stopping gracefully (running tasks finish first)")
    _print_missing(result)
    return ExitCode.OK if result.replies else ExitCode.CRASHED


def _as_json(result: control.Result) -> dict[str, Any]:
    return {
        "replies": [
            {"worker": r.worker, "latency": round(r.latency, 6), "answer": r.answer}
            for r in result.replies
        ],
        "missing": [
            {"worker": m.worker, "state": m.state, "last_seen": m.last_seen} for m in result.missing
        ],
    }


def _print_missing(result: control.Result) -> None:
    if not result.replies and not result.missing:
        print("no worker answered")
    now = time.time()
    for m in result.missing:
        seen = f", last seen {tables.duration(now - m.last_seen)} ago" if m.last_seen else ""
        print(f"missing: {m.worker} ({m.state}{seen})")


def _ping(replies: list[control.Reply]) -> str:
    return tables.render(
        ["WORKER", "REPLY", "LATENCY"],
        [(r.worker, r.answer, tables.duration(r.latency)) for r in replies],
    )


def _active(replies: list[control.Reply]) -> str:
    tasks = [(r.worker, t) for r in replies for t in r.answer]
    rows = [
        (w, t["task_id"], t["task"], t["attempt"], tables.clock(t["started_at"]),
         tables.duration(t["runtime"]), t["args"])
        for w, t in tasks
    ]  # fmt: skip
    heads = ["WORKER", "TASK ID", "NAME", "ATTEMPT", "STARTED (UTC)", "RUNTIME", "ARGS"]
    heads, rows = workflow_columns(heads, rows, [t for _, t in tasks])
    return tables.render(heads, rows) + f"\n{len(rows)} active task(s)"


def _reserved(replies: list[control.Reply]) -> str:
    tasks = [(r.worker, t) for r in replies for t in r.answer]
    rows = [(w, t["task_id"], t["task"], t["queue"], t["attempt"], t["args"]) for w, t in tasks]
    heads = ["WORKER", "TASK ID", "NAME", "QUEUE", "ATTEMPT", "ARGS"]
    heads, rows = workflow_columns(heads, rows, [t for _, t in tasks])
    return tables.render(heads, rows) + f"\n{len(rows)} reserved task(s)"


def workflow_columns(
    heads: list[str], rows: list[tuple[Any, ...]], tasks: list[dict[str, Any]]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """``heads`` and ``rows`` with the workflow columns (root, parent, position in a chord's
    join) before ARGS, when some task is in a workflow."""
    if not any("root_id" in t or "join" in t for t in tasks):
        return heads, rows
    where = [
        (t.get("root_id", ""), t.get("parent_id", ""),
         f"{t['index'] + 1}/{t['of']}" if isinstance(t.get("index"), int) else "")
        for t in tasks
    ]  # fmt: skip
    return (
        [*heads[:-1], "ROOT", "PARENT", "POSITION", heads[-1]],
        [(*row[:-1], *place, row[-1]) for row, place in zip(rows, where, strict=True)],
    )


def _stats(replies: list[control.Reply]) -> str:
    rows = [
        (
            s["worker"],
            s["hostname"],
            s["pid"],
            tables.duration(s["uptime"]),
            s["concurrency"],
            s["processed"],
            s["succeeded"],
            s["failed"],
            s["retried"],
            s["dead_lettered"],
            s["active"],
            s["reserved"],
            f"{s['load']:.0%}",
            "connected" if s["broker_connected"] else "DISCONNECTED",
        )
        for s in (r.answer for r in replies)
    ]
    heads = [
        "WORKER",
        "HOST",
        "PID",
        "UPTIME",
        "CONC",
        "PROCESSED",
        "OK",
        "FAILED",
        "RETRIED",
        "DEAD",
        "ACTIVE",
        "RESERVED",
        "LOAD",
        "BROKER",
    ]
    return tables.render(heads, rows)


_RENDER = {"ping": _ping, "active": _active, "reserved": _reserved, "stats": _stats}


async def _scheduled(app: App, args: argparse.Namespace) -> int:
    levels = await _levels(app)
    peeked = await _peek(app, [lv["queue"] for lv in levels], args.peek) if args.peek else []
    held = await _broadcast(app, "held", args)
    waiting = await _hold_queues(app)
    if args.json:
        workers = [{"worker": r.worker, **r.answer} for r in held.replies]
        report = {"levels": levels, "peeked": peeked, "held": workers, "hold_queues": waiting}
        print(json.dumps(report, indent=2))
        return ExitCode.OK
    _print_levels(levels, peeked)
    print()
    rows = [
        (r.worker, t["task_id"], t["task"], t["queue"], tables.clock(t["eta"]))
        for r in held.replies
        for t in r.answer["tasks"]
    ]
    if rows:
        print(tables.render(["WORKER", "TASK ID", "NAME", "QUEUE", "ETA (UTC)"], rows))
    counts = ", ".join(f"{r.worker}: {r.answer['count']}" for r in held.replies)
    total = sum(r.answer["count"] for r in held.replies)
    print(f"{total} delayed task(s) held by workers until due" + (f" ({counts})" if counts else ""))
    for queue, messages in waiting.items():
        print(f"{messages} in {queue}, waiting for a worker to hold them")
    _print_missing(held)
    return ExitCode.OK


async def _hold_queues(app: App) -> dict[str, int]:
    """Messages waiting in the hold queues of the App's queues (no worker took them yet)."""
    waiting = {}
    for queue in queues_of(app):
        for route in routes(queue, app.settings.partitions_of(queue)):
            depth = await app.transport.queue_depth(app.names.hold_queue(route))
            if depth is not None and depth.messages:
                waiting[depth.name] = depth.messages
    return waiting


async def _levels(app: App) -> list[dict[str, Any]]:
    """The delay level queues that hold messages now, with their TTL."""
    transport, names = app.transport, app.names
    levels: list[dict[str, Any]] = []
    for level, (queue, ttl_ms) in enumerate(delay_queue_ttls(names)):
        depth = await transport.queue_depth(queue)
        if depth is not None and depth.messages:
            levels.append(
                {"level": level, "queue": depth.name, "messages": depth.messages, "ttl_ms": ttl_ms}
            )
    return levels


def _print_levels(levels: list[dict[str, Any]], peeked: list[dict[str, Any]]) -> None:
    print(
        tables.render(
            ["DELAY QUEUE", "MESSAGES", "LEVEL TTL"],
            [(lv["queue"], lv["messages"], tables.duration(lv["ttl_ms"] / 1000)) for lv in levels],
        )
    )
    total = sum(lv["messages"] for lv in levels)
    print(f"{total} delayed message(s) (a message passes through several levels)")
    if peeked:
        print()
        print(
            tables.render(
                ["TASK ID", "NAME", "QUEUE", "ETA (UTC)", "IN"],
                [
                    (p["task_id"], p["task"], p["queue"], tables.clock(p["eta"]), p["delay_queue"])
                    for p in peeked
                ],
            )
        )


async def _peek(app: App, queues: list[str], limit: int) -> list[dict[str, Any]]:
    """Read up to ``limit`` messages of each queue, then requeue them all."""
    found: list[dict[str, Any]] = []
    for queue in queues:
        held: list[Delivery] = []
        try:
            while len(held) < limit and (delivery := await app.transport.get(queue)) is not None:
                held.append(delivery)
                found.append(
                    {
                        "task_id": delivery.message_id,
                        "task": delivery.type,
                        "queue": logical_queue(queue_from_delay_key(delivery.routing_key or "")),
                        "eta": _eta_of(delivery),
                        "delay_queue": queue,
                    }
                )
        finally:
            for delivery in held:
                await delivery.reject(requeue=True)
    return found


def _eta_of(delivery: Delivery) -> str | None:
    """The ETA of a delayed task, ISO 8601 (None if it has none or is not taskq's format)."""
    try:
        eta = envelope_of(delivery).eta
    except DecodeError:
        return None
    return eta.isoformat() if eta is not None else None
