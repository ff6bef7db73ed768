"""Where an App picks its transport: the one function that knows about ``memory://``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..transport import Transport
from .transport import MemoryTransport
from .url import is_memory_url

if TYPE_CHECKING:
    from ..settings import Settings


def transport_for(settings: Settings, connection_name: str) -> Transport:
    """The unconnected transport that ``settings.broker`` asks for: a MemoryTransport for a
    ``memory://`` URL, else the AMQP Transport."""
    if is_memory_url(settings.broker):
        return MemoryTransport(settings, connection_name=connection_name)
    return Transport(settings, connection_name=connection_name)
