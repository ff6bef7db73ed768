"""Where an App picks its transport: the one function that knows about ``memory://``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..transport import Transport, make_transport
from .transport import MemoryTransport
from .url import is_memory_url

if TYPE_CHECKING:
    from ..settings import Settings


def transport_for(settings: Settings, connection_name: str, connection: Any = None) -> Transport:
    """The unconnected transport that ``settings.broker`` asks for: a MemoryTransport for a
    ``memory://`` URL, else the one ``settings.transport`` names (``connection``: see
    :func:`taskq.transport.make_transport`)."""
    if is_memory_url(settings.broker):
        return MemoryTransport(settings, connection_name=connection_name)
    return make_transport(
        settings.transport_options(), connection_name=connection_name, connection=connection
    )
