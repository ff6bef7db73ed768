"""The one seam to RabbitMQ: the only package that speaks AMQP.

``core`` holds the Transport (topology, publishing, consuming); ``link`` keeps a connection
alive; ``connection`` is taskq's own AMQP 0-9-1 client (frames on the hot path decoded by
``frames``, everything else by pamqp's codec); ``wire`` has the message properties, received
deliveries and coalesced acks.
"""

from .core import QueueDepth, Transport
from .wire import Delivery

__all__ = ["Delivery", "QueueDepth", "Transport"]
