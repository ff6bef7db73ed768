"""CPU time of process trees and of the broker, from /proc (Linux only; elsewhere: None).

A tree's time is utime + stime of every live process under a root, plus cutime + cstime
(children that exited and were waited for). A live child is counted by itself only, so nothing
is counted twice. The broker is the RabbitMQ server's ``beam.smp`` process: it serves every
client of the shared RabbitMQ, so its figure includes whatever else ran meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += _children(pid)
    return pids


def ticks(pids: Iterable[int]) -> int:
    """utime + stime + cutime + cstime of ``pids`` (clock ticks); a pid that is gone adds 0."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:  # fields[11:15]: utime stime cutime cstime (stat fields 14-17)
            total += sum(int(f) for f in fields[11:15])
    return total


_broker: list[int] = []


def broker_pids() -> list[int]:
    """The RabbitMQ server's ``beam.smp`` (``-s rabbit boot``: not the short-lived Erlang VMs
    that every ``rabbitmqctl`` call starts); found once, again only when it is gone."""
    if _broker and all((PROC / str(pid)).exists() for pid in _broker):
        return _broker
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if b"beam.smp" in cmdline.split(b"\0", 1)[0] and b"\0rabbit\0boot" in cmdline:
                    found.append(int(entry.name))
            except OSError:
                continue
    _broker[:] = found
    return found


def available() -> bool:
    return TICK_US > 0 and (PROC / "self" / "stat").exists()


class Sample:
    """CPU ticks of some worker trees and of the broker at one moment."""

    def __init__(self, roots: Iterable[int]) -> None:
        self.workers = ticks(pid for root in roots for pid in tree(root))
        self.broker = ticks(broker_pids())


def per_task_us(before: Sample, after: Sample, tasks: int) -> dict[str, float | None]:
    """CPU microseconds per task between two samples: worker trees and broker."""
    if tasks <= 0 or not available():
        return {"worker_cpu_us": None, "broker_cpu_us": None}
    return {
        "worker_cpu_us": round((after.workers - before.workers) * TICK_US / tasks, 1),
        "broker_cpu_us": round((after.broker - before.broker) * TICK_US / tasks, 1),
    }


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of ``pids`` in MiB (from /proc/PID/status; a pid that is gone adds 0)."""
    total_kib = 0
    for pid in pids:
        try:
            status = (PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)
