"""The hand-written hot-path codec (transport.frames) against pamqp's, byte for byte."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands, frame, header
from pamqp.body import ContentBody

from taskq.transport import frames

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
    body_size, decoded = frames.content_header(memoryview(encoded)[7:-1])
    assert body_size == 5
    assert decoded == props


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
    assert frames.content_header(p2) == (4, {"message_id": "m"})
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
    assert frames.returned(memoryview(returned)[7:-1]) == (312, "NO_ROUTE")
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
