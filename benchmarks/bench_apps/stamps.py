"""Start and end times of tasks, for benchmarks/limits.py: one file per process in
``$BENCH_STAMPS`` (a line per event: kind, key, Unix time), read back by the harness.
A line costs a few microseconds; at the rates measured (tens per second) nothing."""

from __future__ import annotations

import os
import time
from typing import IO

_out: IO[str] | None = None
_pid = -1


def stamp(kind: str, key: str = "-") -> None:
    """Note ``kind`` ('s' start, 'e' end) of a task of ``key`` now."""
    global _out, _pid
    if _out is None or _pid != os.getpid():
        _pid = os.getpid()
        _out = open(os.path.join(os.environ["BENCH_STAMPS"], f"{_pid}.txt"), "a", buffering=1)  # noqa: SIM115
    _out.write(f"{kind} {key} {time.time():.6f}\n")


def read(directory: str) -> list[tuple[str, str, float]]:
    """Every event written to ``directory`` so far (all processes)."""
    events = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as lines:
            for line in lines:
                parts = line.split()
                if len(parts) == 3:
                    events.append((parts[0], parts[1], float(parts[2])))
    return events
