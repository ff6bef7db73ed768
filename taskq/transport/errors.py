"""Where the AMQP client's errors become taskq's: the one translation at the transport's edge.

The connection module raises ChannelClosed (a channel or its connection closed: ``code`` is
the broker's reply code, 0 for a lost connection), Returned and Nacked. None of them reaches
a user: every public method of the Transport runs inside :class:`mapped`, which raises the
matching class of taskq.exceptions instead (as httpx maps httpcore's errors in one place):

* a lost connection (no reply code, or one that closed the whole connection) ->
  BrokerUnavailable;
* a refusal of the request itself (404, 403, 405, 406) -> the ``refused`` class the caller
  names (PublishError for a publish), else TopologyMismatch for 406 and BrokerError for the
  rest, with the code as ``reply_code``;
* a returned publish -> PublishError(unroutable=True); a nacked one -> PublishError.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from ..exceptions import BrokerError, BrokerUnavailable, PublishError, TopologyMismatch
from .connection import ACCESS_REFUSED, NOT_FOUND, RESOURCE_LOCKED, ChannelClosed, Nacked, Returned

PRECONDITION_FAILED = 406
# A channel closed with one of these refused the request itself: retrying would repeat it.
NO_LOCAL_REPLICA = "does not have a replica on the local node"
"""RabbitMQ's words for reading a stream through a node where its replica is not running."""
REFUSALS = frozenset({NOT_FOUND, ACCESS_REFUSED, RESOURCE_LOCKED, PRECONDITION_FAILED})


def is_refusal(exc: ChannelClosed) -> bool:
    """Whether the broker refused the request (rather than the connection being lost)."""
    return exc.code in REFUSALS


def broker_error(
    exc: Exception, doing: str, refused: type[BrokerError] | None = None
) -> BrokerError:
    """The taskq error for ``exc``, raised by the transport while ``doing`` something (its
    text starts with ``doing``: "declaring queue 'emails': lost the broker: ...")."""
    if isinstance(exc, Returned):
        return PublishError(f"{doing}: returned by RabbitMQ as unroutable: {exc}", unroutable=True)
    if isinstance(exc, Nacked):
        return PublishError(f"{doing}: nacked by RabbitMQ: {exc}")
    return by_code(exc.code if isinstance(exc, ChannelClosed) else 0, exc, doing, refused)


def by_code(
    code: int, exc: BaseException, doing: str, refused: type[BrokerError] | None = None
) -> BrokerError:
    """The taskq error for a channel or connection that closed with reply ``code`` (0: the
    connection was lost) because of ``exc``, while ``doing`` something; any AMQP client's
    errors are mapped through here (see also taskq.transport.aiopika_errors)."""
    if code not in REFUSALS:
        return BrokerUnavailable(f"{doing}: lost the broker: {exc}")
    if code == PRECONDITION_FAILED and NO_LOCAL_REPLICA in str(exc):
        # A stream is read on a node that holds a replica of it; the replica of a stream
        # declared a moment ago elsewhere (or of a node starting) is not up yet: it passes.
        return BrokerUnavailable(f"{doing}: the stream has no replica on this node yet: {exc}")
    if refused is None:
        refused = TopologyMismatch if code == PRECONDITION_FAILED else BrokerError
    if refused is TopologyMismatch:
        return TopologyMismatch(
            f"{doing}: an existing exchange or queue has other arguments than taskq declares: "
            f"{exc}. Delete it (rabbitmqctl delete_queue NAME) or use another prefix.",
            reply_code=code,
        )
    return refused(f"{doing}: refused by RabbitMQ: {exc}", reply_code=code)


def native_error(
    exc: BaseException, doing: str, refused: type[BrokerError] | None
) -> BrokerError | None:
    """The taskq error for an exception of the native client, or None for any other."""
    if isinstance(exc, ChannelClosed | Returned | Nacked):
        return broker_error(exc, doing, refused)
    return None


Translate = Callable[[BaseException, str, "type[BrokerError] | None"], "BrokerError | None"]
"""What maps one AMQP client's exception to taskq's (None: not that client's to map)."""


class mapped:  # lower case: it reads as a statement, `with mapped("declaring"):`
    """A context in which the AMQP client's errors are raised as taskq's (see the module
    doc); ``doing`` says what was under way, ``refused`` is the class of a refusal, and
    ``translate`` is the client's mapping (the native client's by default; aio-pika's is in
    taskq.transport.aiopika_errors)."""

    __slots__ = ("doing", "refused", "translate")

    def __init__(
        self,
        doing: str,
        refused: type[BrokerError] | None = None,
        translate: Translate = native_error,
    ) -> None:
        self.doing = doing
        self.refused = refused
        self.translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            error = self.translate(exc, self.doing, self.refused)
            if error is not None:
                raise error from exc
