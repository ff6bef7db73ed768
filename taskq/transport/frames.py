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
import struct
from collections.abc import Mapping
from typing import Any

from pamqp import decode, encode, frame
from pamqp.base import Frame as PamqpFrame

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
    size = payload[pos]
    return str(payload[pos + 1 : pos + 1 + size], "utf-8"), pos + 1 + size


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


def content_header(payload: memoryview) -> tuple[int, dict[str, Any]]:
    """A content header: (body size, the properties that are set, by name)."""
    _, _, body_size, flags = _HEADER_FIXED.unpack_from(payload)
    if flags & 1:
        raise FrameError("continued property flags are not supported")
    props: dict[str, Any] = {}
    pos = 14
    bit = 1 << 15
    for name in PROPERTY_ORDER:
        if flags & bit:
            props[name], pos = _property(name, payload, pos)
        bit >>= 1
    return body_size, props


def _property(name: str, payload: memoryview, pos: int) -> tuple[Any, int]:
    if name in ("delivery_mode", "priority"):
        return payload[pos], pos + 1
    if name == "headers":
        (size,) = struct.unpack_from(">I", payload, pos)
        used, table = decode.field_table(bytes(payload[pos : pos + 4 + size]))
        return table, pos + used
    if name == "timestamp":
        (seconds,) = _U64.unpack_from(payload, pos)
        return dt.datetime.fromtimestamp(seconds, dt.UTC), pos + 8
    return _short_str(payload, pos)


def confirm(payload: memoryview) -> tuple[int, bool]:
    """A publisher confirm (``basic.ack`` or ``basic.nack`` from the broker): (tag, multiple)."""
    tag, bits = _TAG_BITS.unpack_from(payload, 4)
    return tag, bool(bits & 1)


def returned(payload: memoryview) -> tuple[int, str]:
    """``basic.return``: (reply code, reply text)."""
    (code,) = struct.unpack_from(">H", payload, 4)
    text, _ = _short_str(payload, 6)
    return code, text


def _encode_short(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError(f"AMQP short string longer than 255 bytes: {value[:40]!r}...")
    return bytes((len(data),)) + data


_FLAG = {name: 1 << (15 - index) for index, name in enumerate(PROPERTY_ORDER)}


def properties(props: Mapping[str, Any]) -> tuple[int, bytes]:
    """(property flags, encoded properties) of ``props``, which holds only the properties to
    send, in :data:`PROPERTY_ORDER` (as ``wire.properties`` builds them)."""
    flags = 0
    parts = []
    for name, value in props.items():
        flags |= _FLAG[name]
        if name == "delivery_mode" or name == "priority":
            parts.append(bytes((value,)))
        elif name == "headers":
            parts.append(encode.field_table(value))
        elif name == "timestamp":
            parts.append(_U64.pack(int(value.timestamp())))
        else:
            parts.append(_encode_short(value))
    return flags, b"".join(parts)


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
    """The frames of one ``basic.publish`` (method, content header, body), as one write."""
    method_payload = b"".join((
        _CLASS_METHOD.pack(BASIC, PUBLISH), b"\0\0", _encode_short(exchange),
        _encode_short(routing_key), b"\x01" if mandatory else b"\x00",
    ))  # fmt: skip
    flags, encoded = properties(props)
    parts = [
        _FRAME_HEAD.pack(METHOD, channel, len(method_payload)), method_payload, FRAME_END_BYTE,
        _HEADER_HEAD.pack(HEADER, channel, 14 + len(encoded), BASIC, 0, len(body), flags),
        encoded, FRAME_END_BYTE,
    ]  # fmt: skip
    chunk = frame_max - 8
    for start in range(0, len(body), chunk):
        piece = body[start : start + chunk]
        parts += (_FRAME_HEAD.pack(BODY, channel, len(piece)), piece, FRAME_END_BYTE)
    return b"".join(parts)


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
