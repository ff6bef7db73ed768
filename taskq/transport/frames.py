"""AMQP 0-9-1 frames on the worker's hot path, read and written by hand. Pure: no I/O.

A delivery is three frames: ``basic.deliver`` (a method frame), a content header with the
message properties, and the body. pamqp decodes them into objects, one field at a time, and
that cost dominated a worker's profile. This module splits a byte buffer into frames and
decodes exactly what the worker needs of those three with ``struct``; every other method frame
is left to pamqp (:func:`method`), which is fine off the hot path. It also builds the few
frames the consumer writes per message: ``basic.ack`` and ``basic.reject``.

Wire facts relied on (AMQP 0-9-1, section 4.2): a frame is ``type:u8 channel:u16 size:u32
payload frame-end(0xCE)``; the frames of one delivery arrive in order on their channel, but
frames of different channels may interleave; property flags are 16 bits, high bit first, in
the order of :data:`PROPERTY_ORDER`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pamqp import decode, encode, frame
from pamqp.base import Frame as PamqpFrame

from ..exceptions import EncodeError

METHOD = 1
HEADER = 2
BODY = 3
HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"

BASIC = 60
PUBLISH = 40
RETURN = 50
DELIVER = 60
GET_OK = 71
ACK = 80
REJECT = 90
NACK = 120

_FRAME_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_HEADER_FIXED = struct.Struct(">HHQH")  # class, weight, body size, property flags
_ACK = struct.Struct(">BHIHHQBB")  # head, class, method, tag, multiple, frame end
_TAG_BITS = struct.Struct(">QB")
_HEADER_HEAD = struct.Struct(">BHIHHQH")  # frame head, class, weight, body size, flags
_HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

PROPERTY_ORDER = (
    "content_type", "content_encoding", "headers", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
    "user_id", "app_id", "cluster_id",
)  # fmt: skip
"""The basic properties, in the order of their flag bits (bit 15 first)."""


class FrameError(ValueError):
    """The peer sent bytes that are not valid AMQP framing (the connection must close)."""


Frames = list[tuple[int, int, memoryview]]
"""``(frame type, channel, payload)`` of each frame."""


def split(buffer: bytes | bytearray, start: int = 0) -> tuple[Frames, int]:
    """Complete frames in ``buffer`` from ``start``: ``[(type, channel, payload)]`` and the
    offset after the last complete one (a partial frame stays for the next read)."""
    frames = []
    view = memoryview(buffer)
    end = len(buffer)
    pos = start
    head = _FRAME_HEAD.unpack_from
    while end - pos >= 8:
        kind, channel, size = head(buffer, pos)
        stop = pos + 7 + size
        if stop >= end:
            break
        if buffer[stop] != FRAME_END:
            raise FrameError(f"frame of type {kind} on channel {channel} lacks its end marker")
        frames.append((kind, channel, view[pos + 7 : stop]))
        pos = stop + 1
    return frames, pos


def class_method(payload: memoryview) -> tuple[int, int]:
    """The (class id, method id) of a method frame's payload."""
    return _CLASS_METHOD.unpack_from(payload)


def method(channel: int, payload: memoryview) -> PamqpFrame:
    """Decode any method frame with pamqp (for frames off the hot path)."""
    raw = _FRAME_HEAD.pack(METHOD, channel, len(payload)) + bytes(payload) + FRAME_END_BYTE
    _, _, value = frame.unmarshal(raw)
    assert isinstance(value, PamqpFrame)
    return value


def _short_str(payload: memoryview, pos: int) -> tuple[str, int]:
    # Bytes that are not UTF-8 (any client may send them) become lone surrogates, which
    # _encode_short turns back into the same bytes: a message republished as it came keeps them.
    size = payload[pos]
    return str(payload[pos + 1 : pos + 1 + size], "utf-8", "surrogateescape"), pos + 1 + size


class _Unreadable(Exception):
    """A property that could not be read as its type: ``value`` stands in for it, ``end`` is
    where the next property starts, ``why`` says what was wrong."""

    def __init__(self, value: Any, end: int, why: str) -> None:
        super().__init__(why)
        self.value, self.end, self.why = value, end, why


def deliver(payload: memoryview) -> tuple[str, int, bool, str, str]:
    """``basic.deliver``: (consumer tag, delivery tag, redelivered, exchange, routing key)."""
    consumer_tag, pos = _short_str(payload, 4)
    (tag,) = _U64.unpack_from(payload, pos)
    redelivered = bool(payload[pos + 8] & 1)
    exchange, pos = _short_str(payload, pos + 9)
    routing_key, _ = _short_str(payload, pos)
    return consumer_tag, tag, redelivered, exchange, routing_key


def get_ok(payload: memoryview) -> tuple[int, bool, str]:
    """``basic.get-ok``: (delivery tag, redelivered, routing key)."""
    (tag,) = _U64.unpack_from(payload, 4)
    redelivered = bool(payload[12] & 1)
    _, pos = _short_str(payload, 13)  # exchange
    routing_key, _ = _short_str(payload, pos)
    return tag, redelivered, routing_key


NO_FLAWS: Mapping[str, str] = MappingProxyType({})
"""The flaws of a content header whose every property could be read."""


def content_header(payload: memoryview) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    """A content header: (body size, the properties that are set, by name, and the flaws:
    what could not be read, by property name, each with why).

    Other clients fill properties their own way, so reading is tolerant, and a property that
    cannot be read spoils only its own message, never the frames after it: a timestamp in
    milliseconds is read as such, one out of a datetime's range is kept as the raw integer,
    a short string that is not UTF-8 is kept (and flawed), a header table that cannot be
    decoded becomes ``{}`` (and flawed). Raises nothing once the body size is known."""
    _, _, body_size, flags = _HEADER_FIXED.unpack_from(payload)
    props: dict[str, Any] = {}
    flaws = NO_FLAWS
    pos = 14
    try:
        if flags & 1:
            raise FrameError("continued property flags are not supported")
        for name, read in _readers_of(flags):
            try:
                props[name], pos = read(payload, pos)
            except _Unreadable as exc:
                props[name], pos = exc.value, exc.end
                flaws = {**flaws, name: exc.why}
        if pos > len(payload):  # a short string said longer than what is left
            raise IndexError(f"properties run {pos - len(payload)} bytes past the header")
    except (FrameError, struct.error, IndexError) as exc:  # cut short: nothing after is known
        flaws = {**flaws, "properties": f"{type(exc).__name__}: {exc}"}
    return body_size, props, flaws


Reader = Callable[[memoryview, int], tuple[Any, int]]
_readers: dict[int, tuple[tuple[str, Reader], ...]] = {}


def _readers_of(flags: int) -> tuple[tuple[str, Reader], ...]:
    """The properties a content header with ``flags`` holds, in order, each with its reader
    (worked out once per distinct flags: a producer sends the same few)."""
    readers = _readers.get(flags)
    if readers is None:
        readers = tuple(
            (name, _READER[name])
            for index, name in enumerate(PROPERTY_ORDER)
            if flags & (1 << (15 - index))
        )
        _readers[flags] = readers  # bounded: at most 2^14 distinct flags
    return readers


def _read_octet(payload: memoryview, pos: int) -> tuple[int, int]:
    return payload[pos], pos + 1


def _read_timestamp(payload: memoryview, pos: int) -> tuple[dt.datetime | int, int]:
    (value,) = _U64.unpack_from(payload, pos)
    return timestamp_of(value), pos + 8


def _read_short(payload: memoryview, pos: int) -> tuple[str, int]:
    size = payload[pos]
    end = pos + 1 + size
    try:
        return str(payload[pos + 1 : end], "utf-8"), end
    except UnicodeDecodeError as exc:
        kept = str(payload[pos + 1 : end], "utf-8", "surrogateescape")
        raise _Unreadable(kept, end, f"not UTF-8: {exc}") from None


def _table(payload: memoryview, pos: int) -> tuple[dict[str, Any], int]:
    (size,) = _U32.unpack_from(payload, pos)
    end = pos + 4 + size
    if end > len(payload):
        raise IndexError("the header table runs past the end of the content header")
    try:
        _, table = decode.field_table(bytes(payload[pos:end]))
    except Exception as exc:  # pamqp's ValueError, UnicodeDecodeError, RecursionError...
        why = f"header table not decodable: {type(exc).__name__}: {exc}"
        raise _Unreadable({}, end, why) from None
    return table, end


_READER: dict[str, Reader] = {
    name: (
        _read_octet if name in ("delivery_mode", "priority")
        else _table if name == "headers"
        else _read_timestamp if name == "timestamp"
        else _read_short
    )
    for name in PROPERTY_ORDER
}  # fmt: skip


# pamqp's rule: a timestamp above 2^32 seconds (year 2106) is in milliseconds, what
# Date.now() or System.currentTimeMillis() give a producer in another language.
_LAST_SECOND = 0xFFFFFFFF


def timestamp_of(value: int) -> dt.datetime | int:
    """A ``timestamp`` property as a datetime (seconds, or milliseconds above 2^32), or the
    raw integer when no datetime can hold it (nanoseconds, 2^64-1, a negative int64)."""
    try:
        return dt.datetime.fromtimestamp(value / 1000 if value > _LAST_SECOND else value, dt.UTC)
    except (ValueError, OverflowError, OSError):
        return value


def timestamp_value(value: dt.datetime) -> int:
    """The raw AMQP timestamp of ``value``, read back as the same second by
    :func:`timestamp_of`: whole seconds, or milliseconds past 2^32 seconds (which a reader
    takes for milliseconds: written in seconds, the year 2106 would come back as 1970)."""
    seconds = value.timestamp()
    return int(seconds * 1000) if seconds > _LAST_SECOND else int(seconds)


def confirm(payload: memoryview) -> tuple[int, bool]:
    """A publisher confirm (``basic.ack`` or ``basic.nack`` from the broker): (tag, multiple)."""
    tag, bits = _TAG_BITS.unpack_from(payload, 4)
    return tag, bool(bits & 1)


def returned(payload: memoryview) -> tuple[int, str, str, str]:
    """``basic.return``: (reply code, reply text, exchange, routing key)."""
    (code,) = struct.unpack_from(">H", payload, 4)
    text, at = _short_str(payload, 6)
    exchange, at = _short_str(payload, at)
    routing_key, _ = _short_str(payload, at)
    return code, text, exchange, routing_key


def _encode_short(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(data),)) + data


_FLAG = {name: 1 << (15 - index) for index, name in enumerate(PROPERTY_ORDER)}


def _long(kind: bytes, data: bytes) -> bytes:
    return kind + _U32.pack(len(data)) + data


# Each value type a header table decodes to (see _table), and how it goes back: losslessly,
# so that a message republished as it came (a dead-letter copy, a requeue) keeps its
# headers. pamqp's own encoder refuses some of them: bytes (a long string that was not
# UTF-8), and a double beyond a float's range (it writes every float as 32 bits).
_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    bool: lambda v: b"t" + (b"\x01" if v else b"\x00"),
    int: encode.table_integer,
    float: lambda v: b"d" + struct.pack(">d", v),
    str: lambda v: _long(b"S", v.encode("utf-8", "surrogateescape")),
    bytes: lambda v: _long(b"S", v),
    bytearray: lambda v: _long(b"x", bytes(v)),
    decimal.Decimal: lambda v: b"D" + encode.decimal(v),
    dt.datetime: lambda v: b"T" + _U64.pack(timestamp_value(v)),
    dict: lambda v: b"F" + _field_table(v),
    list: lambda v: _long(b"A", b"".join(_field_value(item) for item in v)),
    tuple: lambda v: _long(b"A", b"".join(_field_value(item) for item in v)),
    type(None): lambda v: b"V",
}


def _field_value(value: Any) -> bytes:
    for kind in type(value).__mro__:  # the exact type first: a bool is not sent as an int
        encoder = _ENCODERS.get(kind)
        if encoder is not None:
            return encoder(value)
    raise TypeError(f"no AMQP field type for {type(value).__name__}")


def _field_table(table: Mapping[str, Any]) -> bytes:
    parts: list[bytes] = []
    for key, value in table.items():
        name = key.encode("utf-8", "surrogateescape")
        if len(name) > 255:
            raise ValueError(f"header name longer than 255 bytes: {key[:40]!r}...")
        parts += (bytes((len(name),)), name, _field_value(value))
    data = b"".join(parts)
    return _U32.pack(len(data)) + data


def field_table(table: Mapping[str, Any]) -> bytes:
    """An AMQP field table of ``table``: every value a received header table decodes to goes
    back as it came. Raises EncodeError for a value no field type holds (or nested too deep
    to encode)."""
    try:
        return _field_table(table)
    except (TypeError, ValueError, OverflowError, struct.error, RecursionError) as exc:
        raise EncodeError(f"headers cannot be sent: {type(exc).__name__}: {exc}") from None


def properties(props: Mapping[str, Any]) -> tuple[int, bytes]:
    """(property flags, encoded properties) of ``props``, which holds only the properties to
    send, in :data:`PROPERTY_ORDER` (as ``wire.properties`` builds them)."""
    flags = 0
    parts = []
    for name, value in props.items():
        flag, encode = _PROPERTY_ENCODERS[name]
        flags |= flag
        parts.append(encode(value))
    return flags, b"".join(parts)


def sendable_properties(props: Mapping[str, Any], frame_max: int) -> tuple[int, bytes]:
    """:func:`properties`, or EncodeError for properties the broker would refuse by closing
    the whole connection: headers no field type holds, or a content header larger than a
    frame (RabbitMQ answers that with FRAME_ERROR)."""
    flags, encoded = properties(props)
    if 22 + len(encoded) > frame_max:  # frame head 7, class..flags 14, frame end 1
        raise EncodeError(
            f"the message's properties ({len(encoded)} bytes) do not fit in one frame "
            f"(frame_max {frame_max})"
        )
    return flags, encoded


def publish(
    channel: int,
    exchange: str,
    routing_key: str,
    body: bytes,
    props: Mapping[str, Any],
    *,
    mandatory: bool,
    frame_max: int,
) -> bytes:
    """The frames of one ``basic.publish`` (method, content header, body), as one write.

    Raises EncodeError, before anything is written, as :func:`sendable_properties` does."""
    flags, encoded = sendable_properties(props, frame_max)
    parts = [
        _publish_method(channel, exchange, routing_key, mandatory),
        _HEADER_HEAD.pack(HEADER, channel, 14 + len(encoded), BASIC, 0, len(body), flags),
        encoded, FRAME_END_BYTE,
    ]  # fmt: skip
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += (_FRAME_HEAD.pack(BODY, channel, len(piece)), piece, FRAME_END_BYTE)
    return b"".join(parts)


_CACHE_SIZE = 4096
_shorts: dict[str, bytes] = {}
_methods: dict[tuple[int, str, str, bool], bytes] = {}


def _short_of(value: str) -> bytes:
    """:func:`_encode_short` of a value that repeats (a content type, a queue name), kept."""
    encoded = _shorts.get(value)
    if encoded is None:
        encoded = _encode_short(value)
        if len(_shorts) >= _CACHE_SIZE:  # bounded: many distinct values only cost the encode
            _shorts.clear()
        _shorts[value] = encoded
    return encoded


def _publish_method(channel: int, exchange: str, routing_key: str, mandatory: bool) -> bytes:
    """The ``basic.publish`` method frame, kept per destination: a sender publishes to a few."""
    key = (channel, exchange, routing_key, mandatory)
    frame = _methods.get(key)
    if frame is None:
        payload = b"".join((
            _CLASS_METHOD.pack(BASIC, PUBLISH), b"\0\0", _encode_short(exchange),
            _encode_short(routing_key), b"\x01" if mandatory else b"\x00",
        ))  # fmt: skip
        frame = _FRAME_HEAD.pack(METHOD, channel, len(payload)) + payload + FRAME_END_BYTE
        if len(_methods) >= _CACHE_SIZE:
            _methods.clear()
        _methods[key] = frame
    return frame


def _octet(value: int) -> bytes:
    return bytes((value,))


def _timestamp(value: dt.datetime | int) -> bytes:
    # A raw int is one no datetime could hold (a received value): sent back as is.
    return _U64.pack(value if isinstance(value, int) else timestamp_value(value))


_REPEATING = frozenset(("content_type", "reply_to", "type", "app_id", "user_id"))
"""Properties whose values repeat from message to message (unlike message IDs): encoded once."""
_PROPERTY_ENCODERS: dict[str, tuple[int, Callable[[Any], bytes]]] = {
    name: (
        1 << (15 - index),
        _octet if name in ("delivery_mode", "priority")
        else field_table if name == "headers"
        else _timestamp if name == "timestamp"
        else _short_of if name in _REPEATING
        else _encode_short,
    )
    for index, name in enumerate(PROPERTY_ORDER)
}  # fmt: skip
"""Each property's flag bit and encoder."""


def ack(channel: int, tag: int, *, multiple: bool) -> bytes:
    """A ``basic.ack`` frame."""
    return _ACK.pack(METHOD, channel, 13, BASIC, ACK, tag, 1 if multiple else 0, FRAME_END)


def reject(channel: int, tag: int, *, requeue: bool) -> bytes:
    """A ``basic.reject`` frame."""
    return _ACK.pack(METHOD, channel, 13, BASIC, REJECT, tag, 1 if requeue else 0, FRAME_END)


def marshal(channel: int, value: PamqpFrame) -> bytes:
    """Encode a method frame with pamqp (for frames off the hot path)."""
    return frame.marshal(value, channel)


def heartbeat() -> bytes:
    """A heartbeat frame."""
    return _HEARTBEAT_FRAME


def headers_of(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """The headers table of a message's properties ({} when it has none)."""
    headers = props.get("headers")
    return headers if headers is not None else {}
