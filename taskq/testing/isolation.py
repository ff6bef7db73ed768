"""Throwaway prefixes: give an App names no one else uses, then delete what it declared."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator

from ..app import App
from ..settings import Settings
from ..topology import every_name, routes
from ..transport import make_transport
from ..worker import Worker


def throwaway_prefix(stem: str = "test") -> str:
    """A prefix no other run uses: ``{stem}-`` and 12 random hex digits."""
    return f"{stem}-{uuid.uuid4().hex[:12]}"


def queues_of(app: App) -> list[str]:
    """The queues a worker of ``app`` consumes by default: the default queue and every task's."""
    return Worker(app).queues


@contextlib.contextmanager
def prefixed(app: App, prefix: str) -> Iterator[App]:
    """Give ``app`` the prefix ``prefix`` for the block, and its own prefix back afterwards.

    The App itself is re-prefixed (not a copy), because its tasks send through it. It must
    be closed on entry and on exit: LifecycleError otherwise.
    """
    own = app.settings.prefix
    app.configure(prefix=prefix)
    try:
        yield app
    finally:
        app.configure(prefix=own)


async def delete_topology(settings: Settings, queues: Iterable[str]) -> None:
    """Delete every exchange and queue taskq may have declared under ``settings.prefix`` for
    ``queues`` (short names): work and ``.dead`` queues (every partition of a partitioned
    queue), delay levels, every exchange.

    One at a time on one channel: RabbitMQ 3.10 fails with INTERNAL_ERROR when two exchanges
    bound to each other (the delay levels) are deleted at the same moment.
    """
    transport = make_transport(
        settings.transport_options(), connection_name="taskq-testing-cleanup"
    )
    await transport.connect()
    try:
        physical = [r for q in queues for r in (q, *routes(q, settings.partitions_of(q)))]
        queue_names, exchanges = every_name(transport.names, dict.fromkeys(physical))
        for queue in queue_names:
            await transport.delete_queue(queue)
        for exchange in exchanges:
            await transport.delete_exchange(exchange)
    finally:
        await transport.close()
