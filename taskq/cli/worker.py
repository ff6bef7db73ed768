"""``taskq-worker module:app``: run an App's tasks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from .. import metrics
from ..exceptions import (
    BrokerRefused,
    BrokerUnavailable,
    ConfigurationError,
    TaskqError,
    TopologyMismatch,
    find_error,
)
from ..periodic import Scheduler
from ..worker import Worker
from .beat import scheduler_for
from .common import ExitCode, UsageError, load_app, run_loop
from .logs import setup_logging
from .stopping import Stopper
from .supervisor import PARENT_PID_ENV, Supervisor

log = logging.getLogger("taskq.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskq-worker",
        description="Run the tasks of a taskq App. SIGTERM/SIGINT stop it gracefully; a "
        "second signal forces the stop (running tasks go back to their queue).",
        epilog="exit codes: 0 ok, 1 crashed, 2 usage or import error, 3 broker unreachable, "
        "4 broker refused the login, 5 stopped but left task threads running, 130 stop forced "
        "by a second signal",
    )
    parser.add_argument("app", help="the App to run, as module:attribute (e.g. tasks:app)")
    parser.add_argument("--queues", "-Q", help="comma-separated queues (default: the app's)")
    parser.add_argument("--concurrency", "-c", type=int, help="tasks run at once")
    parser.add_argument(
        "--prefetch", type=int, help="deliveries held at once (default: concurrency)"
    )
    parser.add_argument("--shutdown-timeout", type=float, help="seconds to finish running tasks")
    parser.add_argument(
        "--sync-pool",
        choices=["thread", "process"],
        help="where plain def tasks run unless they choose (default: thread)",
    )
    parser.add_argument(
        "--sync-workers", type=int, help="processes of the process pool (default: CPU count)"
    )
    parser.add_argument(
        "--max-tasks-per-child", type=int, help="replace a pool process after N tasks"
    )
    parser.add_argument(
        "--max-memory-per-child",
        type=int,
        metavar="MIB",
        help="replace a pool process, after its task, once its resident memory passes MIB",
    )
    parser.add_argument("--name", help="worker name (default: app@host.pid)")
    parser.add_argument(
        "--processes",
        "-p",
        type=int,
        default=1,
        help="run N worker processes under a supervisor that restarts them (default 1)",
    )
    parser.add_argument(
        "--log-level", "-l", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--events", action="store_true", help="publish task and worker events")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1")
    parser.add_argument(
        "--beat",
        action="store_true",
        help="also run a periodic scheduler (any number may run: one is active)",
    )
    return parser


async def _serve(worker: Worker, scheduler: Scheduler | None, stopper: Stopper) -> None:
    stopper.install()
    supervisor = os.environ.get(PARENT_PID_ENV)
    watchdog = None
    if supervisor:
        watchdog = asyncio.ensure_future(_stop_if_orphaned(worker, int(supervisor)))
    try:
        if scheduler is None:
            await worker.run()
        else:
            await _run_with_beat(worker, scheduler)
    finally:
        if watchdog is not None:
            watchdog.cancel()


async def _run_with_beat(worker: Worker, scheduler: Scheduler) -> None:
    """Run the worker, and the scheduler beside it from the moment the worker consumes (on the
    worker's connections) until the worker stops."""
    async with asyncio.TaskGroup() as tg:  # main() finds known errors in its ExceptionGroup
        running = tg.create_task(worker.run())
        ready = tg.create_task(worker.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and not running.done():
            beat = tg.create_task(scheduler.run(worker.app.sender))
            await asyncio.wait({running, beat}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        scheduler.stop()


async def _stop_if_orphaned(worker: Worker, supervisor_pid: int) -> None:
    """A supervised worker stops gracefully if its supervisor dies (e.g. SIGKILL)."""
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone; stopping", supervisor_pid)
    worker.stop()


SUPERVISOR_FLAGS = ("--processes", "-p", "--name", "--metrics-port")


def _without_supervisor_flags(argv: Sequence[str]) -> list[str]:
    """The arguments for a child worker: all but --processes, --name and --metrics-port
    (the supervisor gives each child its own name and port)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SUPERVISOR_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in SUPERVISOR_FLAGS)) and not (
            arg.startswith("-p") and arg[2:].isdigit()  # -p2
        ):
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    setup_logging(args.log_level, args.log_format)
    if args.processes > 1:
        child_args = _without_supervisor_flags(raw)
        return Supervisor(child_args, args.processes, args.name, args.metrics_port).run()
    try:
        app = load_app(args.app)
        app.configure(
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            shutdown_timeout=args.shutdown_timeout,
            events=args.events or None,
            sync_pool=args.sync_pool,
            sync_workers=args.sync_workers,
            max_tasks_per_child=args.max_tasks_per_child,
            max_memory_per_child=args.max_memory_per_child,
        )
        queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
        worker = Worker(app, queues=queues, name=args.name, app_spec=args.app)
        scheduler = scheduler_for(app, worker.name) if args.beat else None
        if args.metrics_port:
            metrics.serve(worker, args.metrics_port)
    except (UsageError, ConfigurationError) as exc:
        print(f"taskq-worker: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    stopper = Stopper(worker, scheduler)
    try:
        run_loop(_serve(worker, scheduler, stopper))
    except Exception as exc:
        return stopper.leave(_exit_code_of(exc))
    return stopper.leave(ExitCode.OK)


# The errors that say what is wrong by themselves: logged as one line, with their exit code.
KNOWN_ERRORS: dict[type[TaskqError], ExitCode] = {
    BrokerRefused: ExitCode.BROKER_REFUSED,  # before its base class: the first match counts
    BrokerUnavailable: ExitCode.BROKER_UNREACHABLE,
    TopologyMismatch: ExitCode.USAGE,
    ConfigurationError: ExitCode.USAGE,
}


def _exit_code_of(exc: Exception) -> ExitCode:
    """Log the error that stopped the worker; its exit code. A known error may come wrapped
    in an ExceptionGroup (from a TaskGroup, e.g. with ``--beat``)."""
    known = find_error(exc, tuple(KNOWN_ERRORS))
    if known is None:
        log.error("worker crashed", exc_info=exc)
        return ExitCode.CRASHED
    log.error("%s", known)
    return next(code for kind, code in KNOWN_ERRORS.items() if isinstance(known, kind))


if __name__ == "__main__":
    sys.exit(main())
