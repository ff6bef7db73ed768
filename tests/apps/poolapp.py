"""Tasks for the process pool tests (tests/integration/test_process_pool.py).

Each runs in the worker's process pool (``pool="process"``, or a ``hard_timeout``). The App
reads its settings from the environment, as procapp's does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import time
from pathlib import Path

from taskq import App, Hook, TaskTimeout

app = App("poolapp")


class RecordProcessInit(Hook):
    """Appends the PID of each process that runs ``on_process_init`` to the file named by
    ``TASKQ_TEST_INIT_LOG`` (when set): the worker's own process and each pool process."""

    def on_process_init(self) -> None:
        path = os.environ.get("TASKQ_TEST_INIT_LOG")
        if path:
            with open(path, "a") as log:
                log.write(f"{os.getpid()}\n")


app.add_hook(RecordProcessInit())
_kept: list[bytes] = []


@app.task(pool="process")
def noop() -> None:
    """Nothing: the cost of a run in a process, measured."""


@app.task(pool="process")
def pid() -> int:
    """The process that ran it."""
    return os.getpid()


@app.task(pool="process")
def spin(iterations: int) -> int:
    """Pure Python work (it holds the GIL throughout): ``iterations`` additions."""
    total = 0
    for i in range(iterations):
        total += i
    return total


@app.task(pool="process")
def rendezvous(directory: str, count: int) -> int:
    """Say this process arrived, wait (at most 30 s) until ``count`` runs have, return the pid."""
    Path(directory, str(os.getpid())).touch()
    deadline = time.monotonic() + 30
    while len(list(Path(directory).iterdir())) < count and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the other run, not for the broker
    return os.getpid()


@app.task(pool="process", timeout=0.5)
def soft(path: str) -> None:
    """Sleeps past its 0.5 s soft timeout; its cleanup writes ``path`` when TaskTimeout lands."""
    try:
        time.sleep(60)
    except TaskTimeout:
        Path(path).write_text(f"cleaned up in {os.getpid()}")
        raise


@app.task(hard_timeout=1)
def sleeps_forever() -> None:
    """Stuck in ``time.sleep`` (no soft timeout): only its process's death ends it."""
    time.sleep(3600)


@app.task(timeout=0.3, hard_timeout=1)
def deaf_c_call() -> None:
    """Stuck in a C call with SIGALRM blocked: the soft timeout cannot reach it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.sleep(3600)


@app.task(pool="process")
def keep(mib: int) -> int:
    """Leak ``mib`` MiB (kept alive in this process), return its pid."""
    _kept.append(os.urandom(mib * 1024 * 1024))
    return os.getpid()


@app.task(pool="process")
def segfault() -> None:
    """Read address 0: the process dies of SIGSEGV."""
    ctypes.string_at(0)


@app.task(pool="process")
def exits() -> None:
    """Leave the process at once, without a reply."""
    os._exit(3)


@app.task(pool="process")
def stuck(path: str) -> None:
    """Write this process's pid to ``path``, then sleep an hour (no timeout at all)."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(3600)
