"""A pool child: ``python -m taskq.pool.child module:attr [--init module:function]``.

It imports the App once (and runs the process-init function, if one is given, with the
App), says ``ready``, then runs one job at a time as the worker sends them on stdin, until
stdin closes. Its replies go to a private copy of the stdout it was started with; fd 1 then
points at stderr, so a task's ``print`` cannot corrupt a reply.

- Soft timeout: SIGALRM (``setitimer``) raises TaskTimeout in the main thread, where the
  task runs, so its ``finally``/``except`` blocks run; a C call that never returns to Python
  ignores it (the hard timeout is for that: the worker kills the process).
- No orphans: on Linux the kernel sends SIGKILL when the worker dies (PR_SET_PDEATHSIG);
  elsewhere, and as a second line, a thread exits the process once its parent changed, and
  the main loop exits at end of input.
- SIGINT is ignored: a Ctrl-C in a terminal reaches the whole process group, and the worker
  decides what happens to its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from .. import codec
from .. import outcome as oc
from ..app import App
from ..context import TaskContext, reset_current, set_current
from ..exceptions import InvalidArguments, TaskTimeout
from ..hooks import init_process
from ..results.base import ErrorInfo
from .frames import HEADER, Job, encode_outcome, frame

PR_SET_PDEATHSIG = 1
ORPHAN_CHECK_EVERY = 0.5


def die_with_parent(parent: int) -> None:
    """Be killed when ``parent`` exits: PR_SET_PDEATHSIG on Linux, and a watching thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have died before prctl: then we were already reparented.
    if os.getppid() != parent:
        os._exit(1)
    watch = threading.Thread(target=_watch_parent, args=(parent,), daemon=True)
    watch.start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_EVERY)
    os._exit(1)


class Runner:
    """Runs jobs for one App in this process."""

    def __init__(self, app: App, out: IO[bytes]) -> None:
        self.app = app
        self.out = out
        self._armed = False

    def send(self, message: Any) -> None:
        """Write one reply frame."""
        self.out.write(frame(message))
        self.out.flush()

    def run(self, job: Job) -> oc.Outcome:
        """Run ``job`` under its soft timeout; what became of it."""
        task = self.app.tasks.get(job.task_name)
        if task is None:
            info = ErrorInfo("taskq.UnknownTask", f"no task named {job.task_name!r} here")
            return oc.DeadLetter(oc.UNKNOWN_TASK, info)
        policy = task.config.retry or self.app.default_retry
        token = set_current(self._context(job))
        try:
            args, kwargs = task.signature.validate(job.args, job.kwargs)
            return oc.Succeeded(self._timed(task.func, args, kwargs, job.timeout))
        except InvalidArguments as exc:
            return oc.DeadLetter(oc.INVALID_ARGS, oc.error_info(exc))
        except Exception as exc:
            return oc.from_exception(exc, job.attempt, policy)
        finally:
            reset_current(token)

    def _timed(
        self, func: Callable[..., Any], args: Any, kwargs: dict[str, Any], timeout: float | None
    ) -> Any:
        if timeout is None:
            return func(*args, **kwargs)
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return func(*args, **kwargs)
        finally:
            self._armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)

    def on_alarm(self, signum: int, frame: Any) -> None:
        """SIGALRM: the running task is past its soft timeout."""
        if self._armed:  # not after the task returned (a late alarm)
            self._armed = False
            raise TaskTimeout("task ran longer than its timeout (soft timeout)")

    def _context(self, job: Job) -> TaskContext:
        async def report(fraction: float, message: str | None) -> None:
            self.send(["progress", fraction, message])

        return TaskContext(
            job.task_id, job.task_name, job.queue, job.attempt, job.root_id or job.task_id,
            report, job.scheduled_for, job.partition,
        )  # fmt: skip

    def reply(self, outcome: oc.Outcome) -> None:
        """Send what became of a job, with this process's resident memory."""
        try:
            data = frame(["done", encode_outcome(outcome), resident_kib()])
        except Exception as exc:  # a result msgpack cannot carry: the task fails
            data = frame(["done", encode_outcome(oc.Failed(oc.error_info(exc))), resident_kib()])
        self.out.write(data)
        self.out.flush()


def resident_kib() -> int:
    """This process's resident set size in KiB (VmRSS of /proc/self/status; 0 where there is
    no /proc)."""
    with contextlib.suppress(OSError), open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def read_frame(source: IO[bytes]) -> Any | None:
    """The next message from the worker, or None at end of input."""
    header = source.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = source.read(size)
    if len(body) < size:
        return None
    return codec.unpack(body)


def _load(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attr or "app").split("."):
        target = getattr(target, part)
    return target


def _private_stdio() -> tuple[IO[bytes], IO[bytes]]:
    """The protocol's pipes, kept apart from what the task's code may read or print."""
    source = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return source, out


def main(argv: list[str]) -> int:
    """Serve jobs until end of input (the worker closed the pipe)."""
    die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, out = _private_stdio()
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    app = _load(argv[0])
    if not isinstance(app, App):
        raise SystemExit(f"{argv[0]!r} is not a taskq App")
    init_process(app)  # the App's on_process_init hooks (entry point hooks included)
    if len(argv) > 2 and argv[1] == "--init":
        _load(argv[2])(app)
    runner = Runner(app, out)
    signal.signal(signal.SIGALRM, runner.on_alarm)
    runner.send(["ready", os.getpid()])
    while (message := read_frame(source)) is not None:
        runner.reply(runner.run(Job.from_message(message)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
