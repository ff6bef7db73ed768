"""The wire envelope: schema 2 out, schemas 2 and 1 in, and every rejection."""

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


def v1_message(envelope: Envelope) -> OutgoingMessage:
    """``envelope`` as taskq 0.1 sent it (schema 1): metadata in headers, body [args, kwargs]."""
    headers: dict[str, Any] = {
        "x-taskq-schema": 1,
        "x-taskq-attempt": envelope.attempt,
        "x-taskq-sent-at": int(envelope.sent_at * 1000),
    }
    if envelope.deliveries:
        headers["x-taskq-deliveries"] = envelope.deliveries
    if envelope.eta is not None:
        headers["x-taskq-eta"] = envelope.eta.isoformat()
    if envelope.expires is not None:
        headers["x-taskq-expires"] = envelope.expires.isoformat()
    if envelope.parent_id is not None:
        headers["x-taskq-parent-id"] = envelope.parent_id
    if envelope.root_id is not None:
        headers["x-taskq-root-id"] = envelope.root_id
    return OutgoingMessage(
        body=codec.pack([envelope.args, envelope.kwargs]),
        message_id=envelope.task_id,
        type=envelope.task_name,
        headers=headers,
        priority=envelope.priority,
        reply_to=envelope.reply_to,
    )


def test_to_message_properties() -> None:
    msg = sample().to_message()
    assert msg.message_id == "6f1c1a3e-0000-4000-8000-000000000001"
    assert msg.type == "add"
    assert msg.content_type == "application/x-msgpack"
    assert msg.persistent is True
    assert msg.priority == 5
    assert msg.reply_to == "amq.rabbitmq.reply-to.abc"
    # Nothing else travels as a property or header: each costs marshalling per message.
    assert msg.correlation_id is None and msg.timestamp is None
    assert dict(msg.headers) == {}
    assert msg.expiration_ms is None  # never used for delays


def test_priority_zero_and_no_reply_to_are_left_out() -> None:
    msg = sample(reply_to=None, priority=0).to_message()
    assert msg.reply_to is None
    assert msg.priority is None


def test_body_is_schema_2_with_metadata() -> None:
    body = codec.unpack(sample().to_message().body)
    assert body == [
        2,
        [4, Decimal("6.5")],
        {"when": ETA},
        {"t": 1_700_000_000_123, "a": 3, "d": 1, "eta": ETA, "exp": EXPIRES,
         "p": "parent", "r": "root"},
    ]  # fmt: skip


def test_default_metadata_is_left_out() -> None:
    minimal = Envelope("id-1", "noop", "default", [1], {}, sent_at=2.5)
    assert codec.unpack(minimal.to_message().body) == [2, [1], {}, {"t": 2500}]


def test_golden_bytes_of_schema_2() -> None:
    # The wire format is a contract with other workers and producers: pin it.
    minimal = Envelope("id-1", "noop", "default", [1, "x"], {"k": None}, sent_at=2.5)
    assert minimal.to_message().body == b"\x94\x02\x92\x01\xa1x\x81\xa1k\xc0\x81\xa1t\xcd\t\xc4"


def test_decode_round_trip() -> None:
    original = sample(scheduled_for=ETA)
    # The queue is where the message is consumed from: it does not travel.
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
    assert decoded.eta is None and decoded.expires is None and decoded.scheduled_for is None
    assert decoded.reply_to is None
    assert decoded.parent_id is None and decoded.root_id is None


def test_schema_1_messages_still_decode() -> None:
    original = sample()
    decoded = decode(v1_message(original), queue=original.queue)
    assert dataclasses.replace(decoded, sent_at=original.sent_at) == original


def test_schema_1_defaults_when_headers_are_missing() -> None:
    msg = v1_message(sample())
    decoded = decode(msg, headers={}, priority=None)
    assert decoded.queue == "fallback"
    assert decoded.attempt == 1
    assert decoded.deliveries == 0
    assert decoded.priority == 0
    assert decoded.sent_at == 0.0


def test_schema_1_accepts_bytes_header_values() -> None:
    # Some clients put AMQP long strings in tables as bytes.
    msg = v1_message(sample())
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
def test_reject_bad_schema_1_version_header(schema: Any) -> None:
    msg = v1_message(sample())
    with pytest.raises(DecodeError, match="schema"):
        decode(msg, headers={**msg.headers, message.H_SCHEMA: schema})


@pytest.mark.parametrize(
    "payload",
    [[5, [1], {}, {}], [2, [1], {}, []], [2, {}, {}, {}], [2, [1], [], {}], [2, [1], {1: 2}, {}]],
)
def test_reject_malformed_schema_2_bodies(payload: Any) -> None:
    with pytest.raises(DecodeError):
        decode(sample().to_message(), body=codec.pack(payload))


@pytest.mark.parametrize(
    ("key", "value"),
    [("a", "3"), ("a", True), ("d", 1.5), ("eta", "tomorrow"), ("exp", 5), ("p", 7), ("sf", "x")],
)
def test_reject_malformed_schema_2_metadata(key: str, value: Any) -> None:
    with pytest.raises(DecodeError, match=repr(key)):
        decode(sample().to_message(), body=codec.pack([2, [1], {}, {key: value}]))


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
    with pytest.raises(DecodeError, match=r"args|kwargs"):
        decode(v1_message(sample()), body=codec.pack(payload))


def test_reject_body_that_is_not_msgpack() -> None:
    with pytest.raises(DecodeError):
        decode(sample().to_message(), body=b"\xc1\xc1")


@pytest.mark.parametrize("header", [message.H_ATTEMPT, message.H_DELIVERIES])
@pytest.mark.parametrize("value", ["3", 3.0, True, None, b"3"])
def test_reject_non_int_counter_header(header: str, value: Any) -> None:
    msg = v1_message(sample())
    with pytest.raises(DecodeError, match=header):
        decode(msg, headers={**msg.headers, header: value})


@pytest.mark.parametrize("header", [message.H_ETA, message.H_EXPIRES])
def test_reject_bad_time_header(header: str) -> None:
    msg = v1_message(sample())
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


def test_a_resent_task_asks_its_worker_to_check_for_an_outcome() -> None:
    # A publish sent again after a dropped connection may repeat one that arrived and ran.
    message = Envelope("id-1", "noop", "default", [1], {}, sent_at=2.5).to_message()
    assert "dd" not in codec.unpack(message.body)[3]
    assert message.resend is not None
    again = message.resend()
    assert codec.unpack(again.body)[3]["dd"] is True
    assert again.resend is None and again.message_id == message.message_id


def test_which_messages_may_repeat_one_that_ran() -> None:
    from taskq.execution import may_repeat

    fresh = Envelope("id-1", "noop", "default", [], {})
    assert not may_repeat(fresh)
    for repeated in (
        dataclasses.replace(fresh, dedupe=True),  # an explicit or resent ID
        dataclasses.replace(fresh, deliveries=1),  # delivered before, not finished
        dataclasses.replace(fresh, attempt=2),  # a retry
    ):
        assert may_repeat(repeated)
