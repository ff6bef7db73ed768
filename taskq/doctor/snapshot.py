"""What the doctor fetched from the broker: plain data, filled by taskq.doctor.fetch and read
by the checks. ``None`` means "could not be asked" (the source did not answer)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]
"""One object of a management API answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class Depth:
    """Ready messages and consumers of one queue, from a passive declare (exact, now)."""

    ready: int
    consumers: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeadSamples:
    """Messages in each ``.dead`` queue, counted twice ``interval`` seconds apart."""

    interval: float
    before: Mapping[str, int]
    after: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class ConsumerTimeouts:
    """RabbitMQ's ``consumer_timeout`` per node in milliseconds (None: disabled), and where
    the numbers come from (``rabbitmqctl``, ``--consumer-timeout``, or assumed)."""

    per_node: Mapping[str, int | None]
    source: str
    assumed: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the checks look at."""

    broker: str
    """The broker URL, password redacted."""
    amqp_error: str | None = None
    server: Row | None = None
    """AMQP server properties (``product``, ``version``) when the AMQP connection opened."""
    api_base: str | None = None
    api_error: str | None = None
    overview: Row | None = None
    feature_flags: Sequence[Row] | None = None
    nodes: Sequence[Row] | None = None
    queues: Sequence[Row] | None = None
    """Every queue of the vhost, from the management API (its counts are a few seconds old)."""
    depths: Mapping[str, Depth | None] = dataclasses.field(default_factory=dict)
    """Passive declares of the App's queues (None: the queue does not exist)."""
    refusals: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The broker's refusal of the App's arguments, by queue (asked over AMQP without the API)."""
    dead_samples: DeadSamples | None = None
    consumer_timeouts: ConsumerTimeouts | None = None

    @property
    def amqp_up(self) -> bool:
        """Whether the AMQP connection opened."""
        return self.amqp_error is None

    @property
    def api_up(self) -> bool:
        """Whether the management API answered."""
        return self.api_error is None and self.overview is not None

    @property
    def reachable(self) -> bool:
        """Whether anything answered at all."""
        return self.amqp_up or self.api_up
