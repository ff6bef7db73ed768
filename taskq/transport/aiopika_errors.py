"""Where aio-pika's (and aiormq's) errors become taskq's, as taskq.transport.errors does for
the native client: the same classes for the same faults, so code above the transport cannot
tell which client ran.

* a lost connection, a channel closed under an operation, a connect that failed ->
  BrokerUnavailable (BrokerRefused for a refused login or vhost);
* a channel closed by the broker with 404, 403, 405 or 406 -> the ``refused`` class the caller
  names, else TopologyMismatch for 406 and BrokerError for the rest, with ``reply_code``;
* a returned publish -> PublishError(unroutable=True); a nacked one -> PublishError.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiormq.exceptions as amqp

from ..exceptions import BrokerError, BrokerRefused, PublishError
from .errors import REFUSALS, by_code

_CODES: dict[type[BaseException], int] = {
    amqp.ChannelNotFoundEntity: 404,
    amqp.ChannelAccessRefused: 403,
    amqp.ChannelLockedResource: 405,
    amqp.ChannelPreconditionFailed: 406,
}
LOST = (
    ConnectionError,
    amqp.AMQPConnectionError,
    amqp.ChannelInvalidStateError,
    amqp.ChannelClosed,
    asyncio.TimeoutError,
)
"""What an operation raises when the connection or its channel went away under it."""
CLIENT_ERRORS = (*LOST, amqp.AMQPError)


def reply_code(exc: BaseException) -> int:
    """The broker's reply code of a closed channel (0 when the connection was lost)."""
    for kind, code in _CODES.items():
        if isinstance(exc, kind):
            return code
    if isinstance(exc, amqp.ChannelClosed) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return 0


def is_refusal(exc: BaseException) -> bool:
    """Whether the broker refused the request (repeating it would repeat the refusal)."""
    return reply_code(exc) in REFUSALS


def broker_error(
    exc: BaseException, doing: str, refused: type[BrokerError] | None = None
) -> BrokerError:
    """The taskq error for ``exc``, raised by aio-pika while ``doing`` something."""
    if isinstance(exc, amqp.PublishError):  # a subclass of DeliveryError: first
        return PublishError(f"{doing}: returned by RabbitMQ as unroutable: {exc!r}",
                            unroutable=True)  # fmt: skip
    if isinstance(exc, amqp.DeliveryError):
        return PublishError(f"{doing}: nacked by RabbitMQ: {exc!r}")
    if isinstance(exc, amqp.AuthenticationError | amqp.ProbableAuthenticationError):
        return BrokerRefused(f"{doing}: RabbitMQ refused the login or vhost: {exc!r}")
    return by_code(reply_code(exc), exc, doing, refused)


class mapped:  # lower case: it reads as a statement, `with mapped("declaring"):`
    """A context in which aio-pika's errors are raised as taskq's."""

    __slots__ = ("doing", "refused")

    def __init__(self, doing: str, refused: type[BrokerError] | None = None) -> None:
        self.doing = doing
        self.refused = refused

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, CLIENT_ERRORS) and not isinstance(exc, BrokerError):
            raise broker_error(exc, self.doing, self.refused) from exc
