"""Content headers on taskq's aio-pika connections: read tolerantly, as the native client
reads them, only where taskq opened the connection (pure: frames built by hand)."""

from __future__ import annotations

import struct

import pamqp.frame
import pytest
from pamqp.exceptions import UnmarshalingException

from taskq.message import OutgoingMessage
from taskq.transport import aiopika_properties as props


def header_frame(properties: bytes, flags: int) -> bytes:
    payload = struct.pack(">HHQH", 60, 0, 3, flags) + properties
    return struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"


# type (bit 5) not UTF-8, timestamp (bit 6) in nanoseconds, delivery_mode (bit 12) 7.
ODD = header_frame(
    b"\x07" + struct.pack(">Q", 1_733_000_000_000 * 10**6) + b"\x03\xff\xfeA",
    (1 << 12) | (1 << 6) | (1 << 5),
)


def test_strict_outside_taskq_connections() -> None:
    props.install()
    with pytest.raises(UnmarshalingException):
        pamqp.frame.unmarshal(ODD)


def test_tolerant_header_carries_its_flaws() -> None:
    with props.tolerant():
        consumed, channel, header = pamqp.frame.unmarshal(ODD)
    assert (consumed, channel, header.body_size) == (len(ODD), 1, 3)
    read = header.properties
    assert read.message_type == "\udcff\udcfeA"  # kept, as the native client keeps it
    assert read.timestamp is None and read.delivery_mode is None  # aio-pika accepts these
    headers = dict(read.headers)
    assert set(props.flaws_of(headers)) == {"type"}
    assert headers == {}


def test_flaws_of_a_header_without_any() -> None:
    assert props.flaws_of({"x": 1}) == {}


def test_properties_go_out_as_they_came() -> None:
    class Channel:
        max_content_size = 131072 - 8

    message = OutgoingMessage(body=b"x", type="\udcff", headers={"k": b"\xff"}, timestamp=2**63)
    encoded = props.amqp_properties(message, Channel()).marshal()
    assert b"\x01\xff" in encoded and struct.pack(">Q", 2**63) in encoded
