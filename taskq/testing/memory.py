"""Looking into the in-process broker of a ``memory://`` App (see taskq.memory)."""

from __future__ import annotations

from ..app import App
from ..dlq import DeadMessage, describe
from ..exceptions import ConfigurationError
from ..memory.broker import MemoryBroker
from ..memory.transport import broker_for
from ..memory.url import is_memory_url, parse_memory_url


def broker_of(app: App) -> MemoryBroker:
    """The MemoryBroker that ``app`` uses on the running event loop (its queues, what waits
    out a delay). ConfigurationError for an App that is not on ``memory://``."""
    if not is_memory_url(app.settings.broker):
        raise ConfigurationError(f"App {app.name!r} is not on memory:// (its broker is real)")
    return broker_for(parse_memory_url(app.settings.broker))


def dead_letters(app: App, queue: str | None = None) -> list[DeadMessage]:
    """What ``app``'s tasks dead-lettered in work queue ``queue`` (default: the default
    queue), oldest first, each with its reason, error and traceback, as ``taskq dlq list``
    shows them. They stay where they are (``taskq.dlq`` replays or purges them)."""
    names = app.names
    dead = broker_of(app).queues.get(names.dead_queue(queue or app.settings.default_queue))
    if dead is None:
        return []
    return [describe(message.peek(dead.name)) for message in dead.messages()]
