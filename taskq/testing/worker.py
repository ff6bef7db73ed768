"""An in-process Worker for the length of a block: started, ready, then stopped gracefully."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..worker import Worker

# How long past the worker's own shutdown_timeout a graceful stop may take (closing the
# connections, the store) before the block fails instead of hanging.
STOP_MARGIN = 30.0


@contextlib.asynccontextmanager
async def running(worker: Worker, *, ready_timeout: float = 20.0) -> AsyncIterator[Worker]:
    """Run ``worker`` on the current event loop until the block ends.

    Yields once the worker consumes its queues; raises the worker's own error if it ends
    before that (e.g. BrokerUnavailable), and AssertionError if it is not ready within
    ``ready_timeout`` seconds. At the end of the block the worker is stopped gracefully
    (running tasks may finish within its ``shutdown_timeout``) and awaited, so that an error
    it ended with is raised here.
    """
    task = asyncio.ensure_future(worker.run())
    ready = asyncio.ensure_future(worker.ready.wait())
    try:
        await asyncio.wait(
            {task, ready}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ready.cancel()
    try:
        if task.done():
            task.result()  # raise the worker's error
            raise AssertionError(f"worker {worker.name} stopped before it consumed its queues")
        if not worker.ready.is_set():
            raise AssertionError(
                f"worker {worker.name} did not become ready within {ready_timeout} s"
            )
        yield worker
    finally:
        if not task.done():
            worker.stop()
            await asyncio.wait_for(task, timeout=worker.shutdown_timeout + STOP_MARGIN)
