"""How a ``taskq-worker`` process stops: its signals, a forced stop, and task threads that
outlive the worker.

The first SIGTERM/SIGINT asks for a graceful stop: running tasks get ``shutdown_timeout``
seconds, then what still runs is given back to its queue. The second forces the stop: running
tasks are given back at once, and the process exits FORCED (130) within
``FORCED_EXIT_AFTER`` seconds whatever it still waits for. A third exits at once.

A plain ``def`` task runs in a thread, and Python cannot stop a thread: one past its timeout,
or still running when the worker gave its delivery back, runs on after the worker stopped.
The interpreter would wait for it at exit (concurrent.futures joins its threads) for as long
as the function runs, minutes or forever. The process exits without it instead, with
THREADS_ABANDONED (5), once its logs are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, NoReturn

from .common import ExitCode

if TYPE_CHECKING:
    from ..periodic import Scheduler
    from ..worker import Worker

log = logging.getLogger("taskq.cli")

# Seconds a forced stop gets to give running tasks back and close its connections (it takes
# a few milliseconds on a healthy broker) before the process exits regardless.
FORCED_EXIT_AFTER = 5.0


class Stopper:
    """Turns the process's SIGTERM/SIGINT into stops of its worker (see the module
    docstring) and says with which exit code the process ends."""

    def __init__(self, worker: Worker, scheduler: Scheduler | None) -> None:
        self.worker = worker
        self.scheduler = scheduler
        self.forced = False
        """Whether a signal came while the worker was already stopping."""

    def install(self) -> None:
        """Handle SIGTERM and SIGINT on the running event loop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: signal.Signals) -> None:
        """A stop signal: graceful the first time, forced the second, at once the third."""
        if self.forced:
            hard_exit(ExitCode.FORCED, f"received {sig.name} again: exiting now")
        self.forced = self.worker.stopping
        log.info(
            "received %s: %s", sig.name, "stopping now" if self.forced else "stopping gracefully"
        )
        if self.scheduler is not None:
            self.scheduler.stop()  # at once, so that another scheduler takes over without waiting
        self.worker.stop()
        if self.forced:
            # A thread, not the event loop: a task blocking the loop must not stop the exit.
            deadline = threading.Timer(
                FORCED_EXIT_AFTER,
                hard_exit,
                (ExitCode.FORCED, f"the forced stop took over {FORCED_EXIT_AFTER:.0f} s"),
            )
            deadline.daemon = True
            deadline.start()

    def leave(self, code: ExitCode) -> ExitCode:
        """The process's exit code once the worker stopped with ``code``; if task threads still
        run, exit now without them instead of returning."""
        if self.forced and code in (ExitCode.OK, ExitCode.THREADS_ABANDONED):
            code = ExitCode.FORCED
        threads = self.worker.task_threads
        if threads:
            if code is ExitCode.OK:
                code = ExitCode.THREADS_ABANDONED
            hard_exit(
                code,
                f"{threads} task thread(s) still running (a plain def task past its timeout or "
                "the shutdown timeout: Python cannot stop a thread); exiting without them",
            )
        return code


def hard_exit(code: ExitCode, why: str) -> NoReturn:
    """Log ``why``, write the logs out, and end the process now with ``code``, without waiting
    for any thread (from any thread)."""
    log.warning("%s (exit code %d)", why, code)
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed: nothing left to tell
            stream.flush()
    os._exit(code)
