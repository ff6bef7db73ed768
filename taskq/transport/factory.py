"""Which implementation of the Transport a set of options asks for."""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from ..extras import require_extra
from .core import NativeTransport
from .interface import Transport
from .options import TransportOptions


def make_transport(
    options: TransportOptions, *, connection_name: str = "taskq", connection: Any = None
) -> Transport:
    """An unconnected transport of ``options.implementation``.

    ``connection``: an aio-pika connection the application already holds (aio-pika only):
    the transport then publishes, declares and consumes on channels of that connection, and
    never closes it. ConfigurationError if aio-pika is asked for and not installed.
    """
    if options.implementation == "aio-pika":
        require_extra("aio-pika", "transport='aio-pika'")
        from .aiopika import AioPikaTransport

        return AioPikaTransport(options, connection_name=connection_name, connection=connection)
    if connection is not None:
        raise ConfigurationError(
            "connection= is an aio-pika connection: it needs transport='aio-pika'"
        )
    return NativeTransport(options, connection_name=connection_name)
