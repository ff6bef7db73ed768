"""Message properties on taskq's aio-pika connections, read and written as the native client
reads and writes them (taskq.transport.frames).

Why this exists: aiormq reads every frame with ``pamqp.frame.unmarshal`` in the connection's
reader task, and pamqp decodes a content header strictly. A property that another client
filled its own way makes it raise: a short string that is not UTF-8 (``UnicodeDecodeError``),
a timestamp in nanoseconds or ``2**64 - 1`` (``datetime`` out of range), a header table it
cannot decode. aiormq turns that into ``InvalidFrameError`` and **closes the whole
connection**: the message is redelivered on the next one, which drops again, so one foreign
message stalls every consumer of a worker (issue 20, defect 1). Values that pamqp does read
can still break aio-pika's ``IncomingMessage`` (a ``delivery_mode`` other than 1 or 2 raises
``ValueError``), and the delivery then stays unacked for ever.

The fix, as narrow as aiormq allows: :func:`install` wraps ``pamqp.frame.unmarshal`` once per
process, and the wrapper decodes a content header with taskq.transport.frames (the native
client's tolerant reader) only for connections opened inside :func:`tolerant` (a context
variable that the connection's reader task inherits when it is created, and its robust
reconnects with it). Every other frame, and every frame of any other connection in the
process (an application's own aio-pika connections), is left to pamqp exactly as before.

What a tolerant header gives aio-pika: the same values as the native client, made acceptable
to ``IncomingMessage`` (a timestamp no datetime can hold becomes None, a ``delivery_mode`` other
than 1 or 2 becomes None), and the properties that could not be read, by name with why, under
:data:`FLAWS` in the headers, taken out again by :func:`flaws_of`. That key holds a lone
surrogate, which no decoded AMQP table can contain (pamqp reads keys as strict UTF-8), so a
producer cannot forge it.

Going out, :func:`amqp_properties` has the properties encoded by taskq.transport.frames too:
a message parked in the dead-letter queue goes out with its properties as they came (a short
string that was not UTF-8, a raw integer timestamp, a header value pamqp would not encode),
where pamqp's encoder raises and the parking publish would fail.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import struct
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import pamqp.frame
from pamqp import commands
from pamqp.header import ContentHeader

from ..message import OutgoingMessage
from . import frames
from .wire import properties

FLAWS = "\udcfftaskq-flaws"
"""The header key under which a tolerant header carries its flaws (never a decoded key)."""

_TOLERANT: contextvars.ContextVar[bool] = contextvars.ContextVar("taskq_tolerant", default=False)
_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_HEAD = _FRAME_HEAD.size
_RENAMED = {"type": "message_type"}  # pamqp's name of the type property


@contextlib.contextmanager
def tolerant() -> Iterator[None]:
    """Connections opened inside read their content headers tolerantly (see the module)."""
    install()
    token = _TOLERANT.set(True)
    try:
        yield
    finally:
        _TOLERANT.reset(token)


def install() -> None:
    """Wrap ``pamqp.frame.unmarshal`` (once per process); idempotent."""
    strict = pamqp.frame.unmarshal
    if getattr(strict, "taskq_tolerant", False):
        return

    def unmarshal(data_in: bytes) -> tuple[int, int, Any]:
        if data_in[:1] == b"\x02" and _TOLERANT.get() and len(data_in) > _HEAD:
            return header_frame(data_in)
        return strict(data_in)

    unmarshal.taskq_tolerant = True  # type: ignore[attr-defined]
    pamqp.frame.unmarshal = unmarshal


def header_frame(data: bytes) -> tuple[int, int, ContentHeader]:
    """``(bytes consumed, channel, ContentHeader)`` of one whole content header frame, whatever
    its properties hold (the flaws under :data:`FLAWS` in its headers)."""
    _, channel, size = _FRAME_HEAD.unpack_from(data)
    payload = memoryview(data)[_HEAD : _HEAD + size]
    body_size, props, flaws = frames.content_header(payload)
    properties = commands.Basic.Properties()  # its __init__ would validate: set one by one
    for name, value in props.items():
        setattr(properties, _RENAMED.get(name, name), _acceptable(name, value))
    if flaws:
        properties.headers = {**(properties.headers or {}), FLAWS: dict(flaws)}
    return _HEAD + size + 1, channel, ContentHeader(0, body_size, properties)


def _timestamp(value: Any) -> Any:
    return value if isinstance(value, dt.datetime) else None


def _delivery_mode(value: Any) -> Any:
    return value if value in (1, 2) else None


_MAKE_ACCEPTABLE: dict[str, Callable[[Any], Any]] = {
    "timestamp": _timestamp,
    "delivery_mode": _delivery_mode,
}


def _acceptable(name: str, value: Any) -> Any:
    """``value`` as aio-pika's IncomingMessage accepts it for property ``name``."""
    make = _MAKE_ACCEPTABLE.get(name)
    return value if make is None else make(value)


class _Encoded(commands.Basic.Properties):
    """Properties that marshal as taskq.transport.frames encodes them (aiormq reads only
    ``message_id`` of the object, to match a returned message to its publish)."""

    def __init__(self, message_id: str | None, encoded: tuple[int, bytes]) -> None:
        super().__init__(message_id=message_id)
        self.encoded = encoded

    def marshal(self) -> bytes:
        flags, data = self.encoded
        return _FLAGS.pack(flags) + data


_FLAGS = struct.Struct(">H")
_BODY_FRAME_OVERHEAD = 8  # aiormq's max_content_size is frame_max less a body frame's head and end


def amqp_properties(message: OutgoingMessage, channel: Any) -> commands.Basic.Properties:
    """The properties of ``message`` for ``basic_publish`` on aiormq ``channel``, encoded as
    the native client encodes them; EncodeError, as frames.sendable_properties says, for
    what the broker would answer by closing the connection (aiormq does not check)."""
    frame_max = channel.max_content_size + _BODY_FRAME_OVERHEAD
    return _Encoded(message.message_id, frames.sendable_properties(properties(message), frame_max))


def flaws_of(headers: MutableMapping[str, Any]) -> Mapping[str, str]:
    """The flaws a tolerant header put in ``headers`` (taken out), or none."""
    if FLAWS not in headers:
        return frames.NO_FLAWS
    flaws: Mapping[str, str] = headers.pop(FLAWS)
    return flaws
