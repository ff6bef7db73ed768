"""The one seam to RabbitMQ: the only package that speaks AMQP.

Everything above this package uses what is exported here, and nothing else of it:
:class:`Transport` (the typed interface, see ``interface``), :class:`Delivery`, the lease
types, :class:`TransportOptions` (plain values built from Settings by the App), the broker
URL parsing that Settings validates with, and :func:`make_transport`, which builds the
implementation that the options name:

* ``native`` (``core``): taskq's own AMQP 0-9-1 client (``connection``, frames on the hot path
  decoded by ``frames``), connections kept alive by ``link``, the lease in ``lease``;
* ``aio-pika`` (``aiopika``): aio-pika's robust connection (the ``taskq[aio-pika]`` extra),
  with its properties read and written as the native client does (``aiopika_properties``),
  the reply queue and work queues restored by taskq (``aiopika_replies``, ``aiopika_queues``),
  the lease in ``aiopika_lease`` and its errors mapped in ``aiopika_errors``.

``shared`` has what every implementation does the same way (the in-memory one too); ``wire``
has the message properties, received deliveries and coalesced acks; ``errors`` maps
the native client's errors to taskq.exceptions.
"""

from .endpoints import Endpoint, TlsFiles, parse_endpoint, parse_endpoints, split_urls
from .factory import make_transport
from .interface import (
    NOT_FOUND,
    RESOURCE_LOCKED,
    Cancel,
    Lease,
    QueueDepth,
    Reply,
    Tenure,
    Transport,
)
from .options import IMPLEMENTATIONS, Implementation, TransportOptions
from .shared import SharedMethods, raise_unconfirmed
from .wire import Delivery, properties

__all__ = [
    "IMPLEMENTATIONS",
    "NOT_FOUND",
    "RESOURCE_LOCKED",
    "Cancel",
    "Delivery",
    "Endpoint",
    "Implementation",
    "Lease",
    "QueueDepth",
    "Reply",
    "SharedMethods",
    "Tenure",
    "TlsFiles",
    "Transport",
    "TransportOptions",
    "make_transport",
    "parse_endpoint",
    "parse_endpoints",
    "properties",
    "raise_unconfirmed",
    "split_urls",
]
