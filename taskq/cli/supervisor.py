"""``taskq-worker --processes N``: a supervisor that runs N worker processes.

It starts N ``taskq-worker`` children with the same arguments (child i serves metrics on
``--metrics-port`` + i), restarts one that dies (with
exponential backoff, reset once a child has lived a minute), forwards SIGTERM/SIGINT so that
every child stops gracefully (a second signal is forwarded too, forcing them; a child still
alive a little after its own forced-exit deadline is killed), and exits 0 when every child
stopped cleanly, or with the first meaningful failure code otherwise (e.g. 4 when a child left
task threads running, 130 after a forced stop). A child that exits with a usage/import error
or cannot reach the broker at its first start stops the whole group: restarting would not help.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from .common import ExitCode
from .stopping import FORCED_EXIT_AFTER

log = logging.getLogger("taskq.supervisor")

PARENT_PID_ENV = "TASKQ_SUPERVISOR_PID"
POLL_INTERVAL = 0.1
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
# After a forced stop, how long past the children's own deadline before they are killed.
KILL_MARGIN = 3.0
_CLEAN_STOP = (None, 0, -signal.SIGTERM, -signal.SIGINT)
# A worker that exits with one of these on its first start would fail the same way again.
_FATAL_AT_START = (ExitCode.USAGE, ExitCode.BROKER_UNREACHABLE, ExitCode.BROKER_REFUSED)


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def crowding(processes: int, available: int) -> str | None:
    """Why ``processes`` worker processes may drain slower than one on ``available`` cores
    (None: no reason known). Each busy worker process keeps about a core busy, and the broker
    and the senders need CPU too: with as many processes as cores they take turns instead."""
    if processes <= 1 or processes < available:
        return None
    return (
        f"--processes {processes} on {available} core(s): worker processes, the broker and "
        "the senders then take turns on the cores, and more processes can drain slower than "
        "fewer (measured on 2 cores: 2 processes drained 0.81x to 1.38x of one, run to run). "
        "Use fewer processes than cores, or measure yours (docs/operations/worker.md)"
    )


@dataclasses.dataclass(slots=True)
class Child:
    """One worker process and its restart state."""

    index: int
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs and watches N worker processes (see the module docstring)."""

    def __init__(
        self,
        worker_args: Sequence[str],
        processes: int,
        name: str | None,
        metrics_port: int | None = None,
    ) -> None:
        self.worker_args = list(worker_args)
        self.metrics_port = metrics_port
        self.processes = processes
        self.name = name
        self.children: list[Child] = []
        self.signals_received = 0
        self.exit_code = ExitCode.OK
        self.kill_at: float | None = None
        """When children still alive after a forced stop get SIGKILL."""

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "taskq.cli.worker", *self.worker_args]
        if self.name:
            args += ["--name", f"{self.name}-{index}"]
        if self.metrics_port:
            args += ["--metrics-port", str(self.metrics_port + index)]  # one port per child
        # Own process group: a terminal's Ctrl-C reaches the supervisor only, which forwards it
        # once (children in the terminal's group would see it twice and force-stop).
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        return subprocess.Popen(args, process_group=0, env=env)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals_received += 1
        if self.signals_received == 2:
            self.kill_at = time.monotonic() + FORCED_EXIT_AFTER + KILL_MARGIN
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signum)

    def run(self) -> int:
        """Start the children and watch them until all have stopped; return the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        warning = crowding(self.processes, cores())
        if warning is not None:
            log.warning("%s", warning)
        now = time.monotonic()
        self.children = [Child(i, self._spawn(i), now) for i in range(self.processes)]
        log.info("supervising %d worker processes", self.processes)
        while True:
            # Watch before checking liveness: children that died in the same interval must
            # still have their exit codes seen (and restarts scheduled) before the loop ends.
            for child in self.children:
                self._watch(child)
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self._kill_the_rest()
            if not any(self._alive_or_pending(child) for child in self.children):
                return int(self.exit_code)
            time.sleep(POLL_INTERVAL)

    def _kill_the_rest(self) -> None:
        self.kill_at = None
        for child in self.children:
            if child.process.poll() is None:
                log.warning("worker process %d ignored the forced stop: killing it", child.index)
                child.process.kill()
        if self.exit_code == ExitCode.OK:
            self.exit_code = ExitCode.FORCED

    def _alive_or_pending(self, child: Child) -> bool:
        return child.process.poll() is None or (
            child.restart_at is not None and not self.signals_received
        )

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if self.signals_received:
                child.restart_at = None
            elif now >= child.restart_at:
                child.process = self._spawn(child.index)
                child.started_at, child.restart_at = now, None
            return
        code = child.process.poll()
        if code is None or self.signals_received:
            # A child still starting dies of the forwarded signal itself: a clean stop.
            if code not in _CLEAN_STOP and self.exit_code == ExitCode.OK:
                known = code in {c.value for c in ExitCode}
                self.exit_code = ExitCode(code) if known else ExitCode.CRASHED
            return
        self._on_child_died(child, code, now)

    def _on_child_died(self, child: Child, code: int, now: float) -> None:
        if code in _FATAL_AT_START and child.restarts == 0:
            log.error("worker process %d exited with %d at start; stopping all", child.index, code)
            self.exit_code = ExitCode(code)
            self._on_signal(signal.SIGTERM, None)
            return
        if now - child.started_at > STABLE_AFTER:
            child.restarts = 0
        delay = min(MAX_BACKOFF, 2.0**child.restarts)
        child.restarts += 1
        child.restart_at = now + delay
        log.warning(
            "worker process %d (pid %d) exited with %d; restarting in %.0f s",
            child.index,
            child.process.pid,
            code,
            delay,
        )
