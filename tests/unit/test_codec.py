"""The msgpack codec (round trips, golden wire bytes, errors) and Signature validation."""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from pydantic import BaseModel

from taskq import codec
from taskq.exceptions import DecodeError, EncodeError, InvalidArguments


class Order(BaseModel):
    order_id: int
    item: str
    when: dt.datetime | None = None


UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))
SAMPLE_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def roundtrip(value: Any) -> Any:
    return codec.unpack(codec.pack(value))


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**63 - 1,
        -(2**63),
        "",
        "héllo ✓",
        [1, "a", None, [2.5]],
        {"a": 1, "b": [1, 2], "c": {"d": None}},
        b"\x00\xffraw",
        None,
        True,
        1.5,
        float("inf"),
    ],
)
def test_plain_values_round_trip(value: Any) -> None:
    result = roundtrip(value)
    assert result == value
    assert type(result) is type(value)


def test_bytes_stay_bytes_not_str() -> None:
    assert roundtrip({"k": b"abc"}) == {"k": b"abc"}
    assert isinstance(roundtrip(b"abc"), bytes)


def test_aware_datetime_keeps_its_offset() -> None:
    value = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC_PLUS_2)
    result = roundtrip(value)
    assert result == value
    assert result.utcoffset() == dt.timedelta(hours=2)


def test_naive_datetime_stays_naive() -> None:
    value = dt.datetime(2024, 5, 6, 7, 8, 9)
    result = roundtrip(value)
    assert result == value
    assert result.tzinfo is None


@pytest.mark.parametrize(
    "value",
    [
        dt.date(2024, 2, 29),
        dt.time(23, 59, 58, 999),
        dt.time(1, 2, 3, tzinfo=dt.UTC),
        SAMPLE_UUID,
        uuid.uuid4(),
        Decimal("3.14"),
        Decimal("-0.000000000000000000001"),
        Decimal("12345678901234567890.123456789"),
    ],
)
def test_extension_values_round_trip(value: Any) -> None:
    result = roundtrip(value)
    assert result == value
    assert type(result) is type(value)


def test_date_does_not_come_back_as_datetime() -> None:
    assert type(roundtrip(dt.date(2024, 1, 1))) is dt.date


def test_pydantic_model_arrives_as_dict_and_revalidates() -> None:
    order = Order(order_id=7, item="book", when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    received = roundtrip(order)
    assert received == {"order_id": 7, "item": "book", "when": order.when}
    assert Order.model_validate(received) == order


def test_nested_extension_values() -> None:
    value = {
        "ids": [SAMPLE_UUID],
        "price": Decimal("9.99"),
        "orders": [Order(order_id=1, item="x")],
    }
    assert roundtrip(value) == {
        "ids": [SAMPLE_UUID],
        "price": Decimal("9.99"),
        "orders": [{"order_id": 1, "item": "x", "when": None}],
    }


def test_sets_arrive_as_lists() -> None:
    assert sorted(roundtrip({3, 1, 2})) == [1, 2, 3]
    assert sorted(roundtrip(frozenset({"a", "b"}))) == ["a", "b"]


def test_tuples_arrive_as_lists() -> None:
    assert roundtrip((1, 2)) == [1, 2]


# -- golden bytes: the wire format of schema version 1 ----------------------------------------


GOLDEN = [
    # code 1, datetime: ext8 (c7), length 0x20, code 01, ISO text with the offset
    (
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC_PLUS_2),
        "c72001" + b"2024-05-06T07:08:09.123456+02:00".hex(),
    ),
    # code 1, naive datetime
    (dt.datetime(2024, 5, 6, 7, 8, 9), "c71301" + b"2024-05-06T07:08:09".hex()),
    # code 2, date: ext8, length 10
    (dt.date(2024, 5, 6), "c70a02323032342d30352d3036"),
    # code 3, UUID: fixext16 (d8), code 03, 16 raw bytes
    (SAMPLE_UUID, "d80312345678123456781234567812345678"),
    # code 4, Decimal: fixext4 (d6), code 04, "3.14"
    (Decimal("3.14"), "d604332e3134"),
    # code 5, pydantic model: fixext8 (d7), code 05, msgpack of {"a": 1, "b": "x"}
    ("model", "d70582a16101a162a178"),
    # code 6, time: fixext8 (d7), code 06, "07:08:09"
    (dt.time(7, 8, 9), "d70630373a30383a3039"),
]


class Small(BaseModel):
    a: int
    b: str


@pytest.mark.parametrize(("value", "expected"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_bytes(value: Any, expected: str) -> None:
    if value == "model":
        value = Small(a=1, b="x")
    assert codec.pack(value).hex() == expected
    assert codec.unpack(bytes.fromhex(expected)) == (
        {"a": 1, "b": "x"} if isinstance(value, BaseModel) else value
    )


def test_extension_codes_are_stable() -> None:
    assert (
        codec.EXT_DATETIME,
        codec.EXT_DATE,
        codec.EXT_UUID,
        codec.EXT_DECIMAL,
        codec.EXT_MODEL,
        codec.EXT_TIME,
    ) == (1, 2, 3, 4, 5, 6)


def test_golden_envelope_body() -> None:
    # [args, kwargs] of add(4, y=6): fixarray(2), fixarray(1) 4, fixmap(1) "y" 6
    assert codec.pack([[4], {"y": 6}]).hex() == "92910481a17906"


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xc1",  # the one byte msgpack never uses
        b"\x92\x01",  # array of 2 with one element: truncated
        b"\x01\x02",  # extra data after a complete value
        b"\xd7\x63" + b"\x00" * 8,  # unknown extension code 99
        b"\xd6\x04\xff\xfe\xfd\xfc",  # Decimal ext with bytes that are not UTF-8 text
        b"\xc7\x03\x01abc",  # datetime ext with text that is not ISO
        b"\xd4\x03\x00",  # UUID ext with 1 byte instead of 16
        b"",
    ],
)
def test_unpack_garbage_raises_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.unpack(garbage)


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\x91" * 200_000 + b"\xc0", "nesting too deep"),  # msgpack's error has no text
        (b"\xc1", "FormatError"),  # neither has this one: its type says what happened
        (b"", "incomplete input"),  # a text of its own is kept
    ],
    ids=["deep", "reserved-byte", "empty"],
)
def test_a_decode_error_always_says_why(garbage: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as raised:
        codec.unpack(garbage)
    assert why in str(raised.value)
    assert not str(raised.value).rstrip().endswith(":")


def test_decode_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        codec.unpack(b"\xc1")


class Opaque:
    pass


@pytest.mark.parametrize("value", [Opaque(), [1, {"x": Opaque()}], object()])
def test_pack_unserialisable_raises_encode_error_naming_the_type(value: Any) -> None:
    with pytest.raises(EncodeError) as info:
        codec.pack(value)
    name = "object" if type(value) is object else "Opaque"
    assert name in str(info.value)


def test_pack_integer_too_large_raises_encode_error() -> None:
    with pytest.raises(EncodeError):
        codec.pack(2**64)


def test_raw_msgpack_datetime_ext_is_not_used() -> None:
    # msgpack's own timestamp type (-1) would lose the offset: taskq must never emit it.
    packed = codec.pack(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    assert msgpack.unpackb(packed, timestamp=0).code == codec.EXT_DATETIME


# -- Signature: bind ---------------------------------------------------------------------------


async def add(x: int, y: int = 2) -> int:
    return x + y


def test_bind_returns_args_and_kwargs_to_send() -> None:
    sig = codec.Signature(add)
    assert sig.bind((1,), {}) == ([1], {})
    assert sig.bind((1, 3), {}) == ([1, 3], {})
    assert sig.bind((), {"x": 1, "y": 5}) == ([1, 5], {})


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"z": 1}), ((1,), {"x": 2})],
)
def test_bind_wrong_call_raises_invalid_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    sig = codec.Signature(add)
    with pytest.raises(InvalidArguments) as info:
        sig.bind(args, kwargs)
    assert isinstance(info.value, TypeError)
    assert "add" in str(info.value)


def test_bind_does_not_validate_types() -> None:
    # Types are the worker's job (and the type checker's): bind only checks the shape.
    assert codec.Signature(add).bind(("x",), {}) == (["x"], {})


# -- Signature: validate -----------------------------------------------------------------------


def test_validate_coerces_in_lax_mode() -> None:
    assert codec.Signature(add).validate(["4"], {"y": "5"}) == ((4, 5), {})


def echo(x: int, y: int = 2, *, z: str = "z") -> tuple[int, int, str]:
    return (x, y, z)


def test_validate_leaves_defaults_to_the_function() -> None:
    args, kwargs = codec.Signature(echo).validate(["4"], {})
    assert echo(*args, **kwargs) == (4, 2, "z")
    args, kwargs = codec.Signature(echo).validate([4], {"z": "w"})
    assert echo(*args, **kwargs) == (4, 2, "w")


def test_validate_rejects_invalid_values() -> None:
    with pytest.raises(InvalidArguments) as info:
        codec.Signature(add).validate(["not a number"], {})
    assert "x" in str(info.value)


def test_validate_rejects_a_wrong_shape() -> None:
    with pytest.raises(InvalidArguments):
        codec.Signature(add).validate([1, 2, 3], {})
    with pytest.raises(InvalidArguments):
        codec.Signature(add).validate([], {"nope": 1})


async def ship(order: Order, copies: int = 1) -> None:
    pass


def test_validate_turns_a_dict_back_into_the_model() -> None:
    received = roundtrip(Order(order_id=3, item="pen"))
    args, _ = codec.Signature(ship).validate([received], {})
    assert args == (Order(order_id=3, item="pen"),)
    assert isinstance(args[0], Order)


def test_validate_rejects_a_dict_that_is_not_the_model() -> None:
    with pytest.raises(InvalidArguments):
        codec.Signature(ship).validate([{"order_id": "x"}], {})


def variadic(first: int, *rest: int, **extra: Decimal) -> None:
    pass


def test_validate_var_positional_and_var_keyword() -> None:
    args, kwargs = codec.Signature(variadic).validate(["1", "2", 3], {"a": "1.5", "b": 2})
    assert args == (1, 2, 3)
    assert all(type(a) is int for a in args)
    assert kwargs == {"a": Decimal("1.5"), "b": Decimal(2)}
    assert all(type(v) is Decimal for v in kwargs.values())


def test_validate_var_positional_rejects_bad_items() -> None:
    with pytest.raises(InvalidArguments):
        codec.Signature(variadic).validate([1, "x"], {})


def keyword_only(a: int, *, b: dt.date) -> None:
    pass


def test_validate_keyword_only() -> None:
    args, kwargs = codec.Signature(keyword_only).validate([1], {"b": "2024-01-02"})
    assert args == (1,)
    assert kwargs == {"b": dt.date(2024, 1, 2)}


def clashing(
    json: str, model_x: int, schema: int, copy: int = 0, dict: int = 0
) -> tuple[str, int, int, int, int]:
    return (json, model_x, schema, copy, dict)


def test_parameters_named_like_basemodel_attributes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sig = codec.Signature(clashing)
        args, kwargs = sig.validate(["j", "1"], {"schema": "2", "dict": "4"})
    assert clashing(*args, **kwargs) == ("j", 1, 2, 0, 4)
    with pytest.raises(InvalidArguments) as info:
        sig.validate(["j", "1", "x"], {})
    assert "schema" in str(info.value)


def untyped(a, b=1):  # type: ignore[no-untyped-def]
    return a


def test_unannotated_function_passes_values_through() -> None:
    sig = codec.Signature(untyped)
    assert sig.validate(["x"], {}) == (("x",), {})
    assert sig.validate_result({"k": 1}) == {"k": 1}


# -- Signature: validate_result ----------------------------------------------------------------


async def returns_model() -> Order:
    return Order(order_id=1, item="a")


async def returns_tuple() -> tuple[int, str]:
    return (1, "a")


async def returns_datetime() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def returns_none() -> None:
    return None


async def returns_any() -> Any:
    return None


def test_validate_result_dict_to_model() -> None:
    result = codec.Signature(returns_model).validate_result({"order_id": 1, "item": "a"})
    assert result == Order(order_id=1, item="a")
    assert isinstance(result, Order)


def test_validate_result_list_to_tuple() -> None:
    assert codec.Signature(returns_tuple).validate_result([1, "a"]) == (1, "a")


def test_validate_result_str_to_datetime() -> None:
    result = codec.Signature(returns_datetime).validate_result("2024-05-06T07:08:09+02:00")
    assert result == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC_PLUS_2)


def test_validate_result_none_and_any_pass_through() -> None:
    assert codec.Signature(returns_none).validate_result(None) is None
    assert codec.Signature(returns_any).validate_result({"x": 1}) == {"x": 1}


def test_validate_result_invalid_value_raises() -> None:
    with pytest.raises(ValueError):
        codec.Signature(returns_model).validate_result({"order_id": "no"})


def test_forward_references_resolve_lazily() -> None:
    def later(x: LaterModel) -> LaterModel:  # type: ignore[name-defined]  # noqa: F821
        return x

    sig = codec.Signature(later)  # LaterModel is not defined yet: building must not fail
    globals()["LaterModel"] = Small
    try:
        assert sig.validate([{"a": 1, "b": "c"}], {}) == ((Small(a=1, b="c"),), {})
    finally:
        del globals()["LaterModel"]


def test_nested_models_and_values_round_trip() -> None:
    # The model extension packs inside the outer pack: it must not share its buffer.
    class Point(BaseModel):
        x: int
        tags: list[str]

    value = [1, Point(x=2, tags=["a"]), "mid", {"p": Point(x=3, tags=[])}, [Point(x=4, tags=["b"])]]
    assert codec.unpack(codec.pack(value)) == [
        1, {"x": 2, "tags": ["a"]}, "mid", {"p": {"x": 3, "tags": []}}, [{"x": 4, "tags": ["b"]}],
    ]  # fmt: skip


def test_a_failed_pack_leaves_nothing_behind_for_the_next() -> None:
    with pytest.raises(EncodeError):
        codec.pack([1, 2, object()])
    assert codec.unpack(codec.pack([3])) == [3]


def test_exactly_typed_arguments_skip_validation_and_others_are_validated() -> None:
    def task(a: int, b: str, c: float, d: bool, e: bytes) -> None: ...

    signature = codec.Signature(task)
    args = [1, "x", 2.5, True, b"z"]
    validated, _ = signature.validate(args, {})
    assert validated == tuple(args)
    # Not exactly the annotated types: pydantic converts them as before.
    coerced, _ = signature.validate([1, "x", 2, 1, b"z"], {})
    assert coerced == (1, "x", 2.0, True, b"z") and type(coerced[2]) is float
    with pytest.raises(InvalidArguments):
        signature.validate(["not an int", "x", 2.5, True, b"z"], {})


def test_var_parameters_may_be_left_empty() -> None:
    def report(title: str, *values: int, **labels: str) -> str:
        return title

    signature = codec.Signature(report)
    assert signature.validate(["t"], {}) == (("t",), {})
    assert signature.validate(["t", "1"], {"env": "prod"}) == (("t", 1), {"env": "prod"})
    assert signature.validate([], {"title": "t"}) == (("t",), {})
