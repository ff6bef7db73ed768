"""The execution ledger: what the suite's tasks ran, recorded outside taskq.

Each run of a task appends ``start ID PID`` when its body begins and ``done ID PID`` when it
ends (``stopped ID PID`` when it is interrupted instead), to a per-run file named by
``TASKQ_FAULTS_LEDGER``. Every line is one ``write`` on a descriptor opened with
``O_APPEND``: the kernel appends each such write whole, so lines from several worker
processes never interleave, and a SIGKILL loses at most the line not yet written. The counts
therefore cannot depend on taskq, the thing under test.

The suite itself writes ``cancelling ID PID`` before it cancels a task and ``cancelled ID PID``
once the cancel returned (confirmed): the file's order then says whether a run of that task
started after its cancel was confirmed (:attr:`Snapshot.late`), or while it was in flight.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Collection, Iterable
from pathlib import Path

LEDGER_ENV = "TASKQ_FAULTS_LEDGER"


def note(event: str, task_id: str) -> None:
    """Append ``event task_id pid`` to the ledger named by the environment."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        raise RuntimeError(f"{LEDGER_ENV} is not set: the fault suite's tasks need a ledger")
    append(path, event, task_id)


def append(path: str | Path, event: str, task_id: str) -> None:
    """Append ``event task_id pid`` to the ledger at ``path``, in one ``write``."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {task_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The ledger at one moment: runs started and finished, per task ID and per process."""

    started: collections.Counter[tuple[str, int]]
    done: collections.Counter[tuple[str, int]]
    stopped: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter
    )
    """Runs interrupted (by a cancel, or the worker's own stop) before their end."""
    late: frozenset[str] = frozenset()
    """Tasks with a run that started after their cancel was confirmed."""
    racing: frozenset[str] = frozenset()
    """Tasks with a run that started while their cancel was in flight (not yet confirmed)."""

    def done_by_id(self) -> collections.Counter[str]:
        """Finished runs per task ID."""
        out: collections.Counter[str] = collections.Counter()
        for (task_id, _), n in self.done.items():
            out[task_id] += n
        return out

    def running(self, pids: Collection[int]) -> list[str]:
        """Task IDs whose body has started but not ended in one of the processes ``pids``."""
        return [
            task_id
            for (task_id, pid), n in self.started.items()
            if pid in pids and n > self.done[(task_id, pid)] + self.stopped[(task_id, pid)]
        ]

    def count_done(self, ids: Iterable[str]) -> int:
        """How many of ``ids`` have finished at least once."""
        finished = self.done_by_id()
        return sum(1 for task_id in ids if finished[task_id])


class Ledger:
    """One run's ledger file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def read(self) -> Snapshot:
        """Parse the file (a malformed line is skipped)."""
        started: collections.Counter[tuple[str, int]] = collections.Counter()
        done: collections.Counter[tuple[str, int]] = collections.Counter()
        stopped: collections.Counter[tuple[str, int]] = collections.Counter()
        cancels: dict[str, set[str]] = {"cancelling": set(), "cancelled": set()}
        late: set[str] = set()
        racing: set[str] = set()
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3 or not parts[2].isdigit():
                continue
            event, task_id, pid = parts
            if event in cancels:
                cancels[event].add(task_id)
                continue
            if event == "start" and task_id in cancels["cancelled"]:
                late.add(task_id)
            elif event == "start" and task_id in cancels["cancelling"]:
                racing.add(task_id)
            target = {"done": done, "stopped": stopped}.get(event, started)
            target[(task_id, int(pid))] += 1
        return Snapshot(started, done, stopped, frozenset(late), frozenset(racing))

    def note(self, event: str, task_id: str) -> None:
        """Append a line of the suite's own (``cancelling``, ``cancelled``)."""
        append(self.path, event, task_id)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
