"""The hand-written hot-path codec (transport.frames) against pamqp's, byte for byte."""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands, decode, frame, header
from pamqp.body import ContentBody

from taskq.exceptions import EncodeError
from taskq.transport import frames
from tests import fuzz_messages

PROPS: dict[str, Any] = {
    "content_type": "application/x-msgpack",
    "headers": {"x-taskq-reason": "rejected", "n": 3},
    "delivery_mode": 2,
    "priority": 7,
    "correlation_id": "c-1",
    "reply_to": "taskq.reply.abc",
    "expiration": "1500",
    "message_id": "6f1c1a3e",
    "timestamp": dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC),
    "type": "add",
}


def _pamqp_frames(data: bytes) -> list[tuple[int, Any]]:
    out, pos = [], 0
    while pos < len(data):
        used, channel, value = frame.unmarshal(data[pos:])
        out.append((channel, value))
        pos += used
    return out


def test_a_publish_is_what_pamqp_reads() -> None:
    body = bytes(range(256)) * 1200  # more than one body frame
    data = frames.publish(3, "ex", "rk", body, PROPS, mandatory=True, frame_max=131072)
    (_, method), (_, content), *bodies = _pamqp_frames(data)
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == ("ex", "rk", True)
    assert isinstance(content, header.ContentHeader) and content.body_size == len(body)
    props = content.properties
    assert props.message_type == "add" and props.headers == PROPS["headers"]
    assert (props.priority, props.delivery_mode, props.expiration) == (7, 2, "1500")
    assert props.timestamp == PROPS["timestamp"]
    assert b"".join(b.value for _, b in bodies) == body
    assert all(ch == 3 for ch, _ in _pamqp_frames(data))


@pytest.mark.parametrize("names", [(), ("message_id",), tuple(PROPS)])
def test_properties_read_back_as_written(names: tuple[str, ...]) -> None:
    props = {name: PROPS[name] for name in names}
    encoded = frame.marshal(
        header.ContentHeader(0, 5, commands.Basic.Properties(**_pamqp_names(props))), 1
    )
    body_size, decoded, flaws = frames.content_header(memoryview(encoded)[7:-1])
    assert body_size == 5
    assert decoded == props
    assert flaws == {}


def _pamqp_names(props: dict[str, Any]) -> dict[str, Any]:
    return {("message_type" if k == "type" else k): v for k, v in props.items()}


def test_a_delivery_is_split_and_decoded() -> None:
    deliver = commands.Basic.Deliver("ctag", 2**40 + 5, True, "ex", "default")
    data = b"".join((
        frame.marshal(deliver, 9),
        frame.marshal(header.ContentHeader(0, 4, commands.Basic.Properties(message_id="m")), 9),
        frame.marshal(ContentBody(b"body"), 9),
    ))  # fmt: skip
    parsed, used = frames.split(data + data[:10])  # a partial frame stays behind
    assert used == len(data)
    (k1, c1, p1), (k2, _, p2), (k3, _, p3) = parsed
    assert (k1, k2, k3, c1) == (frames.METHOD, frames.HEADER, frames.BODY, 9)
    assert frames.deliver(p1) == ("ctag", 2**40 + 5, True, "ex", "default")
    assert frames.content_header(p2) == (4, {"message_id": "m"}, {})
    assert bytes(p3) == b"body"


@given(st.integers(1, 2**63 - 1), st.booleans(), st.integers(1, 65535))
def test_ack_and_reject_frames_are_what_pamqp_writes(tag: int, flag: bool, channel: int) -> None:
    assert frames.ack(channel, tag, multiple=flag) == frame.marshal(
        commands.Basic.Ack(tag, flag), channel
    )
    assert frames.reject(channel, tag, requeue=flag) == frame.marshal(
        commands.Basic.Reject(tag, flag), channel
    )


def test_confirms_returns_and_get_ok_are_decoded() -> None:
    ack = frame.marshal(commands.Basic.Ack(77, True), 1)
    assert frames.confirm(memoryview(ack)[7:-1]) == (77, True)
    returned = frame.marshal(commands.Basic.Return(312, "NO_ROUTE", "ex", "rk"), 1)
    assert frames.returned(memoryview(returned)[7:-1]) == (312, "NO_ROUTE", "ex", "rk")
    get_ok = frame.marshal(commands.Basic.GetOk(12, True, "ex", "q", 3), 1)
    assert frames.get_ok(memoryview(get_ok)[7:-1]) == (12, True, "q")


def test_a_frame_without_its_end_marker_is_refused() -> None:
    data = bytearray(frame.marshal(commands.Basic.Ack(1, False), 1))
    data[-1] = 0
    with pytest.raises(frames.FrameError):
        frames.split(data)


def test_a_short_string_over_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="255"):
        frames.publish(1, "", "é" * 200, b"", {}, mandatory=False, frame_max=131072)


def _header(*props: tuple[str, bytes]) -> memoryview:
    """A content header payload of body size 9 with these properties, given as raw bytes."""
    flags = sum(1 << (15 - frames.PROPERTY_ORDER.index(name)) for name, _ in props)
    ordered = sorted(props, key=lambda p: frames.PROPERTY_ORDER.index(p[0]))
    return memoryview(struct.pack(">HHQH", 60, 0, 9, flags) + b"".join(raw for _, raw in ordered))


def _short(data: bytes) -> bytes:
    return bytes((len(data),)) + data


MS = 1_733_000_000_000  # what Date.now() gave on 2024-11-30


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        (1_733_000_000, dt.datetime.fromtimestamp(1_733_000_000, dt.UTC)),
        (MS, dt.datetime.fromtimestamp(MS / 1000, dt.UTC)),  # milliseconds, as pamqp reads
        (MS * 1_000_000, MS * 1_000_000),  # nanoseconds: no datetime holds it, kept raw
        (2**64 - 1, 2**64 - 1),  # -1 as an int64, or "unset" to some clients
    ],
    ids=["seconds", "milliseconds", "nanoseconds", "max"],
)
def test_timestamps_of_other_clients_are_read(raw: int, read: dt.datetime | int) -> None:
    size, props, flaws = frames.content_header(
        _header(("timestamp", struct.pack(">Q", raw)), ("type", _short(b"add")))
    )
    assert (size, props, flaws) == (9, {"timestamp": read, "type": "add"}, {})
    # Sent back (a dead-lettered copy): a datetime as seconds, a raw value as it came.
    _, encoded = frames.properties({"timestamp": read})
    seconds = raw // 1000 if raw > 2**32 else raw
    assert struct.unpack(">Q", encoded)[0] == (raw if isinstance(read, int) else seconds)


@pytest.mark.parametrize("name", ["type", "message_id", "app_id", "content_type"])
def test_a_short_string_that_is_not_utf8_is_kept_and_flawed(name: str) -> None:
    raw = b"\xffbad\xc3"
    size, props, flaws = frames.content_header(
        _header((name, _short(raw)), ("priority", b"\x05"), ("cluster_id", _short(b"c")))
    )
    assert size == 9
    assert props["priority"] == 5 and props["cluster_id"] == "c"  # the others still read
    assert "not UTF-8" in flaws[name] and set(flaws) == {name}
    _, encoded = frames.properties({name: props[name]})
    assert encoded == _short(raw)  # republished with the bytes it came with


@pytest.mark.parametrize(
    "table",
    [
        b"\x01k" + b"Z" + b"junk",  # a field type nobody defines
        b"\x02\xff\xfe" + b"t\x01",  # a key that is not UTF-8
        b"\x01k" + b"T" + struct.pack(">Q", 2**64 - 1),  # a timestamp no datetime holds
        b"\x01kF" + struct.pack(">I", 100),  # a nested table said longer than it is
    ],
    ids=["unknown-type", "key-not-utf8", "timestamp-out-of-range", "truncated"],
)
def test_a_header_table_that_cannot_be_decoded_is_flawed(table: bytes) -> None:
    size, props, flaws = frames.content_header(
        _header(("headers", struct.pack(">I", len(table)) + table), ("type", _short(b"add")))
    )
    assert size == 9
    assert props == {"headers": {}, "type": "add"}  # the property after it is still read
    assert set(flaws) == {"headers"} and "header table" in flaws["headers"]


def test_properties_cut_short_are_flawed_but_the_body_size_is_known() -> None:
    whole = _header(("message_id", _short(b"abcdef")), ("type", _short(b"add")))
    size, _, flaws = frames.content_header(whole[:-5])
    assert size == 9
    assert set(flaws) == {"properties"}


def test_a_deeply_nested_header_table_is_flawed() -> None:
    table = b""
    for _ in range(5000):  # deeper than Python's recursion limit
        table = b"\x01kF" + struct.pack(">I", len(table)) + table
    size, props, flaws = frames.content_header(
        _header(("headers", struct.pack(">I", len(table)) + table))
    )
    assert (size, props) == (9, {"headers": {}})
    assert "RecursionError" in flaws["headers"]


def _comparable(value: Any) -> Any:
    """``value`` with what a re-encode may change on purpose made equal: a timestamp goes back
    in whole seconds, NaN is never equal to itself."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, float) and value != value:
        return "nan"
    return value


@given(st.lists(st.tuples(st.binary(max_size=8), fuzz_messages.FIELD_VALUES), max_size=6))
def test_a_decoded_header_table_goes_back_as_it_came(fields: list[tuple[bytes, bytes]]) -> None:
    raw = b"".join(fuzz_messages.short(key) + value for key, value in fields)
    header_frame = struct.pack(">HHQH", 60, 0, 0, 1 << 13) + struct.pack(">I", len(raw)) + raw
    _, props, flaws = frames.content_header(memoryview(header_frame))
    if flaws:
        return  # not decodable: the worker dead-letters it with no headers of its own
    again = frames.field_table(props["headers"])
    _, decoded = decode.field_table(again)
    assert _comparable(decoded) == _comparable(props["headers"])


def test_properties_larger_than_a_frame_are_refused_before_anything_is_written() -> None:
    headers = {"filler": "z" * 200_000}
    with pytest.raises(EncodeError, match="do not fit in one frame"):
        frames.publish(1, "x", "q", b"", {"headers": headers}, mandatory=False, frame_max=131072)


def test_a_header_no_field_type_holds_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="no AMQP field type for object"):
        frames.field_table({"k": object()})
