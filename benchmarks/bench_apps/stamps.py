"""Start and end times of tasks, for benchmarks/limits.py, delays.py and retry_storm.py: one
file per process in ``$BENCH_STAMPS`` (a line per event: kind, key, Unix time), read back by
the harness. Each line is written at once, or with ``buffered`` inside an event loop kept and
written every 20 ms (a write per line cost a tenth of a no-op task's time in a burst of
20,000), for a harness that never kills the worker: a SIGKILL loses the last 20 ms."""

from __future__ import annotations

import asyncio
import os
import time
from typing import IO

FLUSH_EVERY = 0.02

_out: IO[str] | None = None
_pid = -1
_pending: list[str] = []


def stamp(kind: str, key: str = "-", *, buffered: bool = False) -> None:
    """Note ``kind`` ('s' start, 'e' end) of a task of ``key`` now (see the module)."""
    line = f"{kind} {key} {time.time():.6f}\n"
    try:
        loop = asyncio.get_running_loop() if buffered else None
    except RuntimeError:  # a thread or a process of a peer: no loop to flush from
        loop = None
    if loop is None:
        _file().write(line)
        _file().flush()
        return
    if not _pending:
        loop.call_later(FLUSH_EVERY, _flush)
    _pending.append(line)


def _flush() -> None:
    out = _file()
    out.write("".join(_pending))
    out.flush()
    _pending.clear()


def _file() -> IO[str]:
    global _out, _pid
    if _out is None or _pid != os.getpid():
        _pid = os.getpid()
        _out = open(os.path.join(os.environ["BENCH_STAMPS"], f"{_pid}.txt"), "a")  # noqa: SIM115
    return _out


def read(directory: str) -> list[tuple[str, str, float]]:
    """Every event written to ``directory`` so far (all processes; a line being written, not
    ended yet, is left out)."""
    return Tail(directory).read()


class Tail:
    """The events written to ``directory`` since the last :meth:`read` (each file read from
    where the last read ended: polling many times a second costs what was added, not all)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._offsets: dict[str, int] = {}

    def read(self) -> list[tuple[str, str, float]]:
        events = []
        for name in os.listdir(self.directory):
            with open(os.path.join(self.directory, name), "rb") as out:
                out.seek(self._offsets.get(name, 0))
                data = out.read()
            ended = data.rfind(b"\n") + 1  # a line being written is left for the next read
            self._offsets[name] = self._offsets.get(name, 0) + ended
            for line in data[:ended].decode().splitlines():
                kind, key, at = line.split()
                events.append((kind, key, float(at)))
        return events
