"""What a transport needs to know, as plain frozen values (built from Settings by the App).

The transport never sees Settings: the App (or a tool) builds these options once, and any
implementation of :class:`taskq.transport.Transport` takes them. Settings import this package
(to check broker URLs), so this package must not import Settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from .endpoints import Endpoint, parse_endpoints, split_urls

Implementation = Literal["native", "aio-pika"]
QueueType = Literal["classic", "quorum"]
IMPLEMENTATIONS: tuple[Implementation, ...] = ("native", "aio-pika")


@dataclasses.dataclass(frozen=True, slots=True)
class TransportOptions:
    """Where the broker is, how long to wait for it, and how to name and shape the topology."""

    endpoints: tuple[Endpoint, ...]
    """The broker nodes, in the order connections try them (see taskq.transport.endpoints)."""
    prefix: str = "taskq"
    """Prefix of every exchange and queue name."""
    implementation: Implementation = "native"
    """Which client speaks AMQP: taskq's own (``native``) or aio-pika (``aio-pika``)."""
    connect_timeout: float = 10.0
    """Seconds to connect."""
    publish_timeout: float = 30.0
    """Seconds a publish (or a declare) may wait for the broker to come back."""
    channel_max: int = 2047
    """Channels open at once per connection (the broker's limit wins if lower)."""
    max_priority: int = 10
    """``x-max-priority`` of classic work queues."""
    queue_type: QueueType = "classic"
    """Type of every work queue, except those in ``quorum_queues``."""
    quorum_queues: frozenset[str] = frozenset()
    """Work queues that are quorum when ``queue_type`` is classic."""
    partitions: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    """Work queues split into partitions: queue -> count."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "partitions", MappingProxyType(dict(self.partitions)))

    @classmethod
    def for_broker(cls, broker: str, **options: object) -> TransportOptions:
        """Options for the broker URL(s) ``broker`` (comma-separated), the rest as given."""
        return cls(parse_endpoints(split_urls(broker)), **options)  # type: ignore[arg-type]

    @property
    def shown(self) -> str:
        """The broker URL(s), passwords redacted, for messages and logs."""
        return ",".join(endpoint.shown for endpoint in self.endpoints)

    def queue_type_of(self, queue: str) -> QueueType:
        """The type of work queue ``queue``."""
        return "quorum" if queue in self.quorum_queues else self.queue_type

    def partitions_of(self, queue: str) -> int:
        """How many partitions work queue ``queue`` has (1: not partitioned)."""
        return self.partitions.get(queue, 1)

    @property
    def any_quorum(self) -> bool:
        """Whether some work queue is quorum (the delay levels then are too)."""
        return self.queue_type == "quorum" or bool(self.quorum_queues)
