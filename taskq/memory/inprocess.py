"""The worker that a ``memory://`` App runs beside itself while it is open."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .url import is_memory_url, parse_memory_url

if TYPE_CHECKING:
    from ..app import App


async def start_in_process_worker(app: App) -> contextlib.AsyncExitStack | None:
    """For an open App on ``memory://`` (unless ``?worker=false``): a Worker on every queue
    of its tasks, running on this event loop and ready (consuming) when this returns; close
    the returned stack to stop it gracefully (what runs finishes within its
    ``shutdown_timeout``). None for any other App."""
    if not is_memory_url(app.settings.broker) or not parse_memory_url(app.settings.broker).worker:
        return None
    from ..testing.worker import running  # the worker imports the App: not at import time
    from ..worker import Worker

    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(running(Worker(app)))
    return stack
