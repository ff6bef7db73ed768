"""What both commands share: exit codes, loading the App, logging, the event loop."""

from __future__ import annotations

import enum
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..app import App
from ..redact import install_redaction, redact_url

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """Exit codes of ``taskq-worker`` and ``taskq``."""

    OK = 0
    CRASHED = 1  # an unexpected error stopped the process
    USAGE = 2  # bad arguments, or the app could not be imported
    BROKER_UNREACHABLE = 3  # RabbitMQ could not be reached at start


class UsageError(Exception):
    """Bad command-line input: printed, then exit USAGE."""


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (attribute defaults to ``app``) and return the App there."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise UsageError(f"{spec!r} is not a taskq App (found {type(app).__name__})")
    return app


# Structured fields the worker attaches to its per-task log lines (``extra=``).
LOG_FIELDS = ("task_id", "task_name", "queue", "attempt", "duration")


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


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``text`` or ``json``, with credentials redacted."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    install_redaction(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(main)
    return uvloop.run(main)
