"""The commands' logging: text or JSON lines on stderr, credentials redacted, written in
batches.

A worker at the default INFO level logs one line per task outcome. Written the usual way
(format the time, a regex over the message, one write and flush per line), that doubled a
worker's CPU per task. Here lines are written by a flusher thread in batches at most
``FLUSH_INTERVAL`` apart; a WARNING or worse, and the process's exit, flush at once. A
process killed with SIGKILL may lose the last fraction of a second of INFO lines.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

from ..redact import install_log_redaction, redact_url

FLUSH_INTERVAL = 0.2
MAX_BUFFERED = 512

# Structured fields the worker attaches to its per-task log lines (``extra=``).
LOG_FIELDS = ("task_id", "task_name", "queue", "attempt", "duration")


class TextFormatter(logging.Formatter):
    """``time level logger: message``, with the time's text built once per second."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, super().formatTime(record, datefmt)[:-4]
        return f"{self._stamp},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_url(record.getMessage()),
        }
        for key in LOG_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = redact_url(self.formatException(record.exc_info))
        return json.dumps(entry)


class BatchingHandler(logging.Handler):
    """Formats records as they come and writes them to ``stream`` in batches (see the
    module docstring)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._lines: list[str] = []
        self._wake = threading.Event()
        self._closed = False
        self._flusher = threading.Thread(target=self._run, name="taskq-log", daemon=True)
        self._flusher.start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(line)
            urgent = record.levelno >= logging.WARNING or len(self._lines) >= MAX_BUFFERED
        if urgent:
            self.flush()

    def flush(self) -> None:
        """Write every buffered line now."""
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # stderr closed: nothing left to tell
                    pass

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL)
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``text`` or ``json``, with credentials redacted."""
    handler = BatchingHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    install_log_redaction(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
