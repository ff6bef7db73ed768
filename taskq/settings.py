"""Settings: frozen data with a visible precedence.

defaults < environment (``TASKQ_*``) < keyword arguments in code < CLI flags.
Unknown settings fail loudly.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .exceptions import ConfigurationError
from .memory import is_memory_url, parse_memory_url
from .redact import redact_url
from .topology import MAX_PARTITIONS
from .transport import (
    Endpoint,
    Implementation,
    TlsFiles,
    TransportOptions,
    parse_endpoints,
    split_urls,
)

QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,120}")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid taskq queue name, else raise ConfigurationError.

    Dots and ``*``/``#`` would break the topic routing of the delay levels, so only letters,
    digits, ``_`` and ``-`` are allowed.
    """
    if not QUEUE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid queue name {name!r}: use 1-120 letters, digits, '_' or '-'"
        )
    return name


def check_partition_count(queue: str, count: int) -> int:
    """Return ``count`` if it is a valid partition count of ``queue``, else ConfigurationError."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise ConfigurationError(
            f"partitions of queue {queue!r} must be an integer from 1 to {MAX_PARTITIONS}, "
            f"got {count!r}"
        )
    return count


def check_priority(settings: Settings, priority: int, queue: str, *, explicit: bool = False) -> int:
    """Return ``priority`` if messages of ``queue`` may carry it, else ConfigurationError.

    ``explicit``: the priority was asked for (by a task or a call), not a default; a quorum
    queue then refuses it.
    """
    if explicit and settings.queue_type_of(queue) == "quorum":
        # RabbitMQ 3.10 quorum queues ignore message priority; refuse rather than mislead.
        raise ConfigurationError(
            f"priority needs a classic work queue, and {queue!r} is a quorum queue: quorum "
            "queues have no priorities on RabbitMQ 3.10"
        )
    if not 0 <= priority <= settings.max_priority:
        raise ConfigurationError(
            f"priority must be between 0 and {settings.max_priority}, got {priority}"
        )
    return priority


class Settings(BaseSettings):
    """Everything an App needs to know, validated once and frozen."""

    model_config = SettingsConfigDict(
        env_prefix="TASKQ_", frozen=True, extra="forbid", validate_default=True
    )

    broker: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL of RabbitMQ, or several (the nodes of a cluster) separated by "
        "commas (a list in code); passwords are redacted in logs",
    )
    transport: Implementation = Field(
        default="native",
        description="the AMQP client: 'native' (taskq's own, the fastest) or 'aio-pika' "
        "(pip install 'taskq[aio-pika]')",
    )
    tls_ca_file: str | None = Field(
        default=None, description="CA file that verifies the broker's certificate (amqps://)"
    )
    tls_cert_file: str | None = Field(
        default=None, description="client certificate presented to the broker (amqps://)"
    )
    tls_key_file: str | None = Field(
        default=None, description="private key of the client certificate (amqps://)"
    )
    prefix: str = Field(default="taskq", description="prefix of every exchange and queue name")
    default_queue: str = Field(default="default", description="queue of tasks that name none")
    max_priority: int = Field(default=10, ge=1, le=255, description="x-max-priority of work queues")
    default_priority: int = Field(
        default=0, ge=0, le=255, description="priority of tasks and sends that set none"
    )
    concurrency: int = Field(default=16, ge=1, description="tasks run at once per worker process")
    prefetch: int | None = Field(
        default=None,
        ge=1,
        description="deliveries a worker holds unacked per consumed queue (None: concurrency)",
    )
    threads: int = Field(default=8, ge=1, description="thread pool size for plain `def` tasks")
    sync_pool: Literal["thread", "process"] = Field(
        default="thread",
        description="where plain `def` tasks run unless they choose (`@app.task(pool=...)`)",
    )
    sync_workers: int | None = Field(
        default=None, ge=1, description="processes of the process pool (None: the CPU count)"
    )
    max_tasks_per_child: int | None = Field(
        default=None, ge=1, description="tasks a pool process runs before it is replaced"
    )
    max_memory_per_child: int | None = Field(
        default=None,
        ge=1,
        description="resident memory (MiB) past which a pool process is replaced after its task",
    )
    task_timeout: float | None = Field(default=None, gt=0, description="default task timeout (s)")
    shutdown_timeout: float = Field(
        default=30.0, ge=0, description="seconds running tasks get to finish on SIGTERM"
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="deliveries that did not finish before crash-loop DLQ"
    )
    publish_timeout: float = Field(
        default=30.0, gt=0, description="how long a publish may wait for the broker to come back"
    )
    revocation_expiry: float = Field(
        default=7 * 86400.0,
        ge=60,
        description="seconds a cancel stays in force for queued and delayed tasks",
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="seconds to connect")
    channel_max: int = Field(
        default=2047,
        ge=1,
        le=65535,
        description="channels open at once per connection (the broker's limit wins if lower)",
    )
    queue_type: Literal["classic", "quorum"] = Field(
        default="classic", description="type of every work queue"
    )
    quorum_queues: frozenset[str] = Field(
        default=frozenset(), description="work queues that are quorum when queue_type is classic"
    )
    results: str = Field(
        default="amqp",
        description="'amqp', a redis:// or postgresql:// URL, or a URL of a registered scheme",
    )
    events: bool = Field(default=False, description="publish task and worker events")
    reply_queue_ttl: float = Field(
        default=300.0,
        gt=0,
        description="seconds an unused reply queue outlives its client (AMQP results)",
    )
    result_ttl: float | None = Field(
        default=86400.0, gt=0, description="seconds a durable store keeps a result (None: keep)"
    )
    partitions: dict[str, int] = Field(
        default_factory=dict,
        description="work queues split into partitions: queue -> count (TASKQ_PARTITIONS as "
        "JSON); a count of 1 means not partitioned",
    )

    @field_validator("broker", mode="before")
    @classmethod
    def _broker(cls, value: Any) -> Any:
        # A list (or tuple) of URLs is kept as one comma-separated string.
        if isinstance(value, (list, tuple)):
            return ",".join(split_urls(value))
        return value

    @field_validator("broker")
    @classmethod
    def _broker_urls(cls, value: str) -> str:
        if is_memory_url(value):  # the in-process broker (taskq.memory)
            parse_memory_url(value)
        else:
            parse_endpoints(split_urls(value))  # fail now on a URL that is not one
        return value

    @field_validator("default_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return check_queue_name(value)

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: dict[str, int]) -> dict[str, int]:
        for queue, count in value.items():
            check_queue_name(queue)
            check_partition_count(queue, count)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,80}", value):
            raise ValueError("prefix: use 1-80 letters, digits, '_', '-' or '.'")
        return value

    def queue_type_of(self, queue: str) -> Literal["classic", "quorum"]:
        """The type of work queue ``queue``."""
        return "quorum" if queue in self.quorum_queues else self.queue_type

    def partitions_of(self, queue: str) -> int:
        """How many partitions work queue ``queue`` has (1: not partitioned)."""
        return self.partitions.get(queue, 1)

    @property
    def any_quorum(self) -> bool:
        """Whether some work queue is quorum (the delay levels then are too)."""
        return self.queue_type == "quorum" or bool(self.quorum_queues)

    @property
    def effective_prefetch(self) -> int:
        """Deliveries a worker holds unacked at once."""
        return self.prefetch or self.concurrency

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            if key in ("broker", "results") and isinstance(value, str):
                yield key, redact_url(value)
            else:
                yield key, value

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """The broker URLs, in the order connections try them."""
        return split_urls(self.broker)

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The broker nodes to connect to, TLS files loaded (ConfigurationError if they
        cannot be)."""
        files = TlsFiles(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        return parse_endpoints(self.broker_urls, files)

    def transport_options(self) -> TransportOptions:
        """The plain values a transport is built with (TLS files loaded: ConfigurationError
        if they cannot be)."""
        return TransportOptions(
            self.endpoints(),
            prefix=self.prefix,
            implementation=self.transport,
            connect_timeout=self.connect_timeout,
            publish_timeout=self.publish_timeout,
            channel_max=self.channel_max,
            max_priority=self.max_priority,
            queue_type=self.queue_type,
            quorum_queues=self.quorum_queues,
            partitions=self.partitions,
        )

    def redacted_broker(self) -> str:
        """The broker URL with its password replaced, for logs and output."""
        return redact_url(self.broker)


_NONE_IS_A_VALUE = frozenset({"result_ttl"})  # result_ttl=None: keep results forever


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and ``overrides`` (which win); ConfigurationError if bad.

    An override of None means "not given", except for the settings where None is a value.
    """
    clean = {k: v for k, v in overrides.items() if v is not None or k in _NONE_IS_A_VALUE}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        # Without the input values: pydantic shows them cut short, and a cut URL is no longer
        # recognised by redact_url (the start of its password would show).
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        raise ConfigurationError(redact_url("invalid settings: " + "; ".join(problems))) from None
