"""The task that keeps the extra queue busy in the two-queue variant of the worker tests.

``tests/conftest.py`` runs every test that starts a worker twice: with the worker on its usual
queues, and with the worker also consuming ``EXTRA_QUEUE``, where a feeder publishes short
``NOISE_TASK`` tasks while the test runs. Deliveries of both queues then share the worker's
consume channel and finish in a different order than they arrived, which is the configuration
that hid the multi-queue ack bug (issue 9). Every App a test worker runs registers it.
"""

from __future__ import annotations

import asyncio

from taskq import App

EXTRA_QUEUE = "extra"
NOISE_TASK = "tq_noise"


async def noise(milliseconds: int) -> None:
    """Work for a few milliseconds, so that noise finishes in between the test's own tasks."""
    await asyncio.sleep(milliseconds / 1000)


def register(app: App) -> None:
    """Give ``app`` the noise task (on the app's default queue: the feeder sends it to
    EXTRA_QUEUE explicitly, so registering it changes no worker's default queues)."""
    if NOISE_TASK not in app.tasks:
        app.task(name=NOISE_TASK)(noise)
