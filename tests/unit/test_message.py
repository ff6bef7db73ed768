"""The wire envelope: headers and properties out, decoding and every rejection in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle
from decimal import Decimal
from typing import Any

import pytest

from taskq import codec, message
from taskq.exceptions import DecodeError
from taskq.message import Envelope, OutgoingMessage, decode_envelope

ETA = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2030, 1, 2, 4, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def sample(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "task_id": "6f1c1a3e-0000-4000-8000-000000000001",
        "task_name": "add",
        "queue": "emails",
        "args": [4, Decimal("6.5")],
        "kwargs": {"when": ETA},
        "priority": 5,
        "attempt": 3,
        "deliveries": 1,
        "sent_at": 1_700_000_000.123,
        "eta": ETA,
        "expires": EXPIRES,
        "reply_to": "amq.rabbitmq.reply-to.abc",
        "parent_id": "parent",
        "root_id": "root",
    }
    fields.update(changes)
    return Envelope(**fields)


def decode(msg: OutgoingMessage, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "body": msg.body,
        "content_type": msg.content_type,
        "message_id": msg.message_id,
        "task_name": msg.type,
        "headers": dict(msg.headers),
        "priority": msg.priority,
        "reply_to": msg.reply_to,
        "queue": "fallback",
    }
    fields.update(changes)
    return decode_envelope(**fields)


def test_to_message_properties() -> None:
    msg = sample().to_message()
    assert msg.message_id == "6f1c1a3e-0000-4000-8000-000000000001"
    assert msg.type == "add"
    assert msg.content_type == "application/x-msgpack"
    assert msg.persistent is True
    assert msg.priority == 5
    assert msg.reply_to == "amq.rabbitmq.reply-to.abc"
    assert msg.correlation_id == msg.message_id
    assert msg.timestamp == dt.datetime.fromtimestamp(1_700_000_000.123, dt.UTC)
    assert msg.expiration_ms is None  # never used for delays


def test_to_message_without_reply_to_has_no_correlation_id() -> None:
    msg = sample(reply_to=None).to_message()
    assert msg.reply_to is None
    assert msg.correlation_id is None


def test_to_message_headers() -> None:
    headers = sample().to_message().headers
    assert headers == {
        "x-taskq-schema": 1,
        "x-taskq-attempt": 3,
        "x-taskq-deliveries": 1,
        "x-taskq-sent-at": 1_700_000_000_123,
        "x-taskq-eta": "2030-01-02T03:04:05+00:00",
        "x-taskq-expires": "2030-01-02T04:00:00-05:00",
        "x-taskq-parent-id": "parent",
        "x-taskq-root-id": "root",
    }
    assert isinstance(headers["x-taskq-sent-at"], int)


def test_optional_headers_are_left_out() -> None:
    """Defaults do not travel: every header costs marshalling time on the hot path."""
    headers = sample(eta=None, expires=None, parent_id=None, root_id=None, deliveries=0).headers()
    assert set(headers) == {
        message.H_SCHEMA,
        message.H_ATTEMPT,
        message.H_SENT_AT,
    }


def test_body_is_msgpack_args_kwargs() -> None:
    msg = sample().to_message()
    assert codec.unpack(msg.body) == [[4, Decimal("6.5")], {"when": ETA}]


def test_given_body_is_used_as_is() -> None:
    assert sample().to_message(b"\x92\x90\x80").body == b"\x92\x90\x80"


def test_decode_round_trip() -> None:
    original = sample()
    # The queue is where the message is consumed from: it does not travel in a header.
    decoded = decode(original.to_message(), queue=original.queue)
    # sent-at travels as integer milliseconds
    assert decoded.sent_at == pytest.approx(original.sent_at, abs=0.001)
    assert dataclasses.replace(decoded, sent_at=original.sent_at) == original


def test_decode_round_trip_minimal() -> None:
    original = Envelope("id-1", "noop", "default", [], {})
    decoded = decode(original.to_message(), reply_to="", queue="default")
    assert decoded.task_id == "id-1"
    assert decoded.task_name == "noop"
    assert decoded.queue == "default"
    assert decoded.args == [] and decoded.kwargs == {}
    assert decoded.attempt == 1 and decoded.deliveries == 0
    assert decoded.eta is None and decoded.expires is None
    assert decoded.reply_to is None
    assert decoded.parent_id is None and decoded.root_id is None


def test_decode_defaults_when_headers_are_missing() -> None:
    msg = sample().to_message()
    decoded = decode(msg, headers={}, priority=None)
    assert decoded.queue == "fallback"
    assert decoded.attempt == 1
    assert decoded.deliveries == 0
    assert decoded.priority == 0
    assert decoded.sent_at == 0.0


def test_decode_accepts_bytes_header_values() -> None:
    # Some clients put AMQP long strings in tables as bytes.
    msg = sample().to_message()
    headers = {
        **msg.headers,
        message.H_QUEUE: b"emails",
        message.H_ETA: ETA.isoformat().encode(),
        message.H_PARENT_ID: b"parent",
    }
    decoded = decode(msg, headers=headers)
    assert decoded.queue == "emails"
    assert decoded.eta == ETA
    assert decoded.parent_id == "parent"


# -- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/python-pickle", pickle.dumps([[1], {}])),
        ("application/json", json.dumps([[1], {}]).encode()),
        (None, codec.pack([[1], {}])),
        ("", codec.pack([[1], {}])),
        ("application/msgpack", codec.pack([[1], {}])),
    ],
)
def test_reject_wrong_content_type(content_type: str | None, body: bytes) -> None:
    with pytest.raises(DecodeError, match="content type"):
        decode(sample().to_message(), content_type=content_type, body=body)


@pytest.mark.parametrize("message_id", [None, ""])
def test_reject_no_message_id(message_id: str | None) -> None:
    with pytest.raises(DecodeError, match="message_id"):
        decode(sample().to_message(), message_id=message_id)


@pytest.mark.parametrize("task_name", [None, ""])
def test_reject_no_type(task_name: str | None) -> None:
    with pytest.raises(DecodeError, match="type"):
        decode(sample().to_message(), task_name=task_name)


@pytest.mark.parametrize("schema", [0, 2, "1", None])
def test_reject_bad_schema_version(schema: Any) -> None:
    msg = sample().to_message()
    with pytest.raises(DecodeError, match="schema"):
        decode(msg, headers={**msg.headers, message.H_SCHEMA: schema})


@pytest.mark.parametrize(
    "payload",
    [
        [[1]],
        [[1], {}, {}],
        {"args": [1], "kwargs": {}},
        [{}, []],
        [(1, 2), "kwargs"],
        [[1], {1: "non-string key"}],
        "text",
        None,
    ],
)
def test_reject_body_not_args_kwargs(payload: Any) -> None:
    with pytest.raises(DecodeError, match="args, kwargs"):
        decode(sample().to_message(), body=codec.pack(payload))


def test_reject_body_that_is_not_msgpack() -> None:
    with pytest.raises(DecodeError):
        decode(sample().to_message(), body=b"\xc1\xc1")


@pytest.mark.parametrize("header", [message.H_ATTEMPT, message.H_DELIVERIES])
@pytest.mark.parametrize("value", ["3", 3.0, True, None, b"3"])
def test_reject_non_int_counter_header(header: str, value: Any) -> None:
    msg = sample().to_message()
    with pytest.raises(DecodeError, match=header):
        decode(msg, headers={**msg.headers, header: value})


@pytest.mark.parametrize("header", [message.H_ETA, message.H_EXPIRES])
def test_reject_bad_time_header(header: str) -> None:
    msg = sample().to_message()
    with pytest.raises(DecodeError, match=header):
        decode(msg, headers={**msg.headers, header: "tomorrow"})


def test_decode_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode(sample().to_message(), content_type="application/json")


def test_truncate_keeps_the_end() -> None:
    text = "a" * 10 + "TAIL"
    assert message.truncate(text, 100) == text
    cut = message.truncate(text, 4)
    assert cut.endswith("TAIL")
    assert "truncated" in cut
    assert len(message.truncate("x" * 100_000)) < message.MAX_HEADER_TEXT + 100
