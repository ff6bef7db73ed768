"""The one seam to RabbitMQ: the only package that imports aio-pika (and aiormq under it).

``core`` holds the Transport (connections, topology, publishing, consuming); ``wire`` the
message properties, received deliveries and coalesced acks of the hot path.
"""

from .core import QueueDepth, Transport
from .wire import Delivery

__all__ = ["Delivery", "QueueDepth", "Transport"]
