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
import socket

import aiormq.exceptions as amqp

from ..exceptions import BrokerError, BrokerRefused, BrokerUnavailable, PublishError
from . import errors
from .endpoints import Endpoint, describe_tls_failure
from .errors import REFUSALS, by_code
from .refusals import blamed, names_one

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


def is_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection or channel went away under an operation. aiormq
    says a connection that is closed (and that aio-pika is reconnecting) with a plain
    RuntimeError ("<Connection ...> closed") when a channel is opened on it."""
    if isinstance(exc, LOST):
        return True
    return type(exc) is RuntimeError and str(exc).endswith(" closed")


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


def refused_this(exc: BaseException, exchange: str, size: int) -> bool:
    """Whether a channel closed with ``exc`` refused a publish of ``size`` bytes to
    ``exchange`` (rather than one pipelined before it on the same channel: that one failed,
    this one may be sent again on a new channel)."""
    code = reply_code(exc)
    if code not in REFUSALS:
        return False
    text = str(exc.args[-1]) if exc.args else str(exc)
    return not names_one(code, text) or blamed(code, text, [(exchange, size)]) == 0


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def timed_out(exc: BaseException) -> bool:
    """Whether a connect failed for want of an answer in time."""
    return any(isinstance(cause, TimeoutError) for cause in _chain(exc))


def connect_error(
    exc: BaseException, endpoint: Endpoint, *, listening: bool = False
) -> BrokerUnavailable:
    """What a failed aio-pika connect to ``endpoint`` means, in the native client's words
    (taskq.transport.connection): a refused login or virtual host (BrokerRefused), a TLS
    handshake that failed, a server that does not speak AMQP, a broker that is down.
    ``listening``: a connect that timed out found something accepting TCP connections at
    the endpoint (so it did not answer the AMQP protocol header)."""
    where, chain = endpoint.shown, _chain(exc)
    for cause in chain:
        clear = describe_tls_failure(cause, where)
        if clear is not None:
            return BrokerUnavailable(clear)
    if isinstance(exc, amqp.AuthenticationError | amqp.ProbableAuthenticationError):
        return BrokerRefused(f"RabbitMQ at {where} refused the login of user "
                             f"{endpoint.user!r} (wrong user or password?): {exc!r}")  # fmt: skip
    text = str(exc)
    if isinstance(exc, amqp.InvalidFrameError) and "OpenOk" in text and "Close" in text:
        return BrokerRefused(
            f"RabbitMQ at {where} refused the virtual host {endpoint.vhost!r} (it does not "
            f"exist, or user {endpoint.user!r} has no permission there)"
        )
    if timed_out(exc) and listening:
        return BrokerUnavailable(
            f"the server at {where} does not speak AMQP 0-9-1: no answer to the protocol "
            "header; is this RabbitMQ's port (5672 for amqp://, 5671 for amqps://)?"
        )
    if any(isinstance(c, ConnectionRefusedError | socket.gaierror | TimeoutError) for c in chain):
        return BrokerUnavailable(f"cannot connect to RabbitMQ at {where}: {exc!r}")
    return BrokerUnavailable(
        f"the server at {where} closed the connection during the AMQP handshake: it does not "
        f"speak AMQP 0-9-1, or it failed ({exc!r}); is this RabbitMQ's port (5672 for "
        "amqp://, 5671 for amqps://)?"
    )


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


def aio_pika_error(
    exc: BaseException, doing: str, refused: type[BrokerError] | None
) -> BrokerError | None:
    """The taskq error for an exception of aio-pika or aiormq (including the RuntimeError of
    a channel opened while aio-pika reconnects), or None for any other."""
    if isinstance(exc, BrokerError) or not (isinstance(exc, CLIENT_ERRORS) or is_lost(exc)):
        return None
    return broker_error(exc, doing, refused)


def mapped(doing: str, refused: type[BrokerError] | None = None) -> errors.mapped:
    """A context in which aio-pika's errors are raised as taskq's (``with mapped(...):``)."""
    return errors.mapped(doing, refused, aio_pika_error)
