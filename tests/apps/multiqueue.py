"""Tasks on three queues, for the tests of a worker that serves several queues.

Each task appends ``{tag}`` to the file ``path`` when it *finishes* its work, so a run cut by
SIGKILL leaves no line and the file lists the tags whose work completed. ``build(prefix)``
gives a client App of a test's prefix; ``app`` is what ``taskq-worker`` imports (settings from
``TASKQ_*``, set by ``tests.support.WorkerProcess``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from taskq import App
from tests.apps import noise

QUEUES = ("default", "side", "bulk")


def _done(path: str, tag: int) -> int:
    with Path(path).open("a") as file:
        file.write(f"{tag}\n")
    return tag


def build(**settings: str) -> App:
    """An App with one task per queue: ``fast`` (default), ``slow`` (side), ``bulk`` (bulk)."""
    app = App("multiqueue", **settings)

    @app.task
    async def fast(path: str, tag: int) -> int:
        return _done(path, tag)

    @app.task(queue="side")
    async def slow(path: str, tag: int, release: str) -> int:
        """Work until the file ``release`` exists (at most a minute)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not Path(release).exists() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return _done(path, tag)

    @app.task(queue="bulk")
    async def bulk(path: str, tag: int, seconds: float) -> int:
        await asyncio.sleep(seconds)
        return _done(path, tag)

    noise.register(app)
    return app


app = build()
