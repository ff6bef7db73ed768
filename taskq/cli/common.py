"""What both commands share: exit codes, loading the App, the event loop (logging: logs)."""

from __future__ import annotations

import enum
import importlib
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..app import App
from ..exceptions import BrokerRefused, BrokerUnavailable

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """Exit codes of ``taskq-worker`` and ``taskq``."""

    OK = 0
    CRASHED = 1  # an unexpected error stopped the process
    USAGE = 2  # bad arguments, or the app could not be imported
    BROKER_UNREACHABLE = 3  # RabbitMQ could not be reached at start
    BROKER_REFUSED = 4  # RabbitMQ refused the login (user, password) or the virtual host
    THREADS_ABANDONED = 5  # the worker stopped, but left task threads running (taskq-worker)
    FORCED = 130  # a second signal forced the stop (taskq-worker; 128 + SIGINT, as shells do)


def broker_exit_code(exc: BrokerUnavailable) -> ExitCode:
    """The exit code for a broker that could not be used at start: a refusal (retrying will
    not help, the URL or the broker's users must change) or a broker out of reach."""
    if isinstance(exc, BrokerRefused):
        return ExitCode.BROKER_REFUSED
    return ExitCode.BROKER_UNREACHABLE


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


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed, else on asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.run(main)
    return uvloop.run(main)
