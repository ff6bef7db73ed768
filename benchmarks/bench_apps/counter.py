"""The completion signal shared by every system measured: a per-process shared-memory counter.

Each no-op task calls ``hit()``: it bumps this process's count and writes it, with the
monotonic times of the first and the latest hit, into an mmap of ``$BENCH_COUNTER_DIR/<pid>``
(a tmpfs file). The harness polls the files every 50 ms and sums them. It costs well under a
microsecond per task (the harness measures it and prints it) and sends nothing to the broker,
so it is the same, cheap signal for taskq, raw aio-pika and every peer. ``time.monotonic_ns``
is CLOCK_MONOTONIC, comparable across processes on Linux.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time

LAYOUT = struct.Struct("<qqq")  # count, first hit ns, last hit ns


class Counter:
    """One process's counter file (created on the first hit, so forks get their own)."""

    def __init__(self, directory: str | None) -> None:
        self._dir = directory
        self._pid = -1
        self._mm: mmap.mmap | None = None
        self._count = 0
        self._first = 0
        self._lock = threading.Lock()
        self._hit_lock = threading.Lock()

    def _open(self) -> mmap.mmap:
        # Threaded workers (Dramatiq) hit this at once: a second open that truncated the file
        # under the first one's mapping would SIGBUS, hence the lock.
        with self._lock:
            if self._pid == os.getpid() and self._mm is not None:
                return self._mm
            assert self._dir, "BENCH_COUNTER_DIR is not set"
            self._count = 0
            fd = os.open(os.path.join(self._dir, str(os.getpid())), os.O_RDWR | os.O_CREAT)
            try:
                os.ftruncate(fd, LAYOUT.size)
                self._mm = mmap.mmap(fd, LAYOUT.size)
            finally:
                os.close(fd)
            self._pid = os.getpid()
            return self._mm

    def hit(self) -> None:
        mm = self._mm if self._pid == os.getpid() and self._mm is not None else self._open()
        # One lock over count and write: a threaded worker (Dramatiq) whose thread was
        # descheduled between taking its number and writing it would otherwise write an older
        # count last, and the drain would never see its last tasks.
        with self._hit_lock:
            self._count += 1
            now = time.monotonic_ns()
            if self._count == 1:
                self._first = now
            LAYOUT.pack_into(mm, 0, self._count, self._first, now)


_counter = Counter(os.environ.get("BENCH_COUNTER_DIR"))
hit = _counter.hit


def read_all(directory: str) -> tuple[int, int, int]:
    """(total count, earliest first hit ns, latest last hit ns) over every process's file."""
    total, first, last = 0, 0, 0
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read(LAYOUT.size)
        if len(data) < LAYOUT.size:
            continue
        count, f_ns, l_ns = LAYOUT.unpack(data)
        total += count
        if f_ns and (not first or f_ns < first):
            first = f_ns
        last = max(last, l_ns)
    return total, first, last
