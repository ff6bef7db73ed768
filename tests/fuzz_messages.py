"""Random messages a foreign producer may publish to a taskq work queue, as raw AMQP bytes
(hypothesis strategies; pure, no I/O).

Every basic property is drawn as its encoded bytes, so that the messages can hold what no
client library would send: short strings that are not UTF-8, header tables with every AMQP
field type (and a few unknown ones), values at and past their type's range, tables nested
hundreds deep or near the frame size. Bodies are valid taskq messages (schema 2 or 1) for
the probe task, garbage, empty, or msgpack of the wrong shape.

A message that can run calls ``PROBE(tag)``: the tag is the message's index, so a run is
counted by its tag (never twice, never a tag that was not published).
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgpack
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed
from hypothesis import strategies as st

from taskq.message import CONTENT_TYPE
from tests.foreign_producer import PROPERTY_ORDER, short, table

PROBE = "probe"
"""The task a runnable fuzzed message calls: ``probe(tag: int)``."""
FRAME_MAX = 131072  # RabbitMQ's default: header tables around it test the frame limit


@dataclasses.dataclass(frozen=True)
class FuzzMessage:
    """One message to publish: its properties as encoded bytes by name, and its body."""

    properties: dict[str, bytes]
    body: bytes
    kinds: tuple[str, ...]
    """What was drawn (for the report of a failure): e.g. ``headers:deep``, ``body:garbage``."""
    bodies: tuple[tuple[str, bytes], ...] = ()
    """One body of each kind, as drawn; :func:`generate` picks the message's body from them."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """For a message with headers, one table of each kind, as drawn; :func:`generate` picks
    the message's table from them."""

    def with_body(self, index: int) -> FuzzMessage:
        """This message with its ``index``-th drawn body (round robin over the kinds)."""
        kind, body = self.bodies[index % len(self.bodies)]
        return dataclasses.replace(self, body=body, kinds=(kind, *self.kinds), bodies=())

    def with_headers(self, index: int) -> FuzzMessage:
        """This message with its ``index``-th drawn header table (round robin over the
        kinds), where it has headers."""
        if not self.headers:
            return self
        kind, value = self.headers[index % len(self.headers)]
        properties = {**self.properties, "headers": value}
        return dataclasses.replace(self, properties=properties, kinds=(*self.kinds, kind),
                                   headers=())  # fmt: skip

    def with_tag(self, tag: int) -> FuzzMessage:
        """This message with ``tag`` in place of the placeholder in a runnable body."""
        return dataclasses.replace(self, body=self.body.replace(_TAG_SLOT, struct.pack(">q", tag)))


# A runnable body carries the tag as msgpack int64 (0xd3 + 8 bytes), filled in per message.
_TAG_PLACEHOLDER = -0x5A5A5A5A5A5A5A5A
_TAG_SLOT = struct.pack(">q", _TAG_PLACEHOLDER)


# -- AMQP field values, encoded (type byte + payload) --------------------------------------


def _packed(kind: bytes, fmt: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: kind + struct.pack(fmt, v))


def _ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.integers(low, high)


def _long_bytes(kind: bytes, data: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return data.map(lambda raw: kind + struct.pack(">I", len(raw)) + raw)


_TEXT = st.text(max_size=40).map(str.encode)
_ANY_BYTES = st.one_of(_TEXT, st.binary(max_size=40))  # often not UTF-8
_TIMESTAMPS = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1_733_000_000, 1_733_000_000_000, 1_733_000_000_000_000_000,
                     2**32 - 1, 2**32, 253_402_300_799, 253_402_300_800, 2**63 - 1, 2**63,
                     2**64 - 1]),
)  # fmt: skip
SCALARS: st.SearchStrategy[bytes] = st.one_of(
    st.integers(0, 255).map(lambda v: b"t" + bytes((v,))),  # a bool byte that is not 0 or 1
    _packed(b"b", ">b", _ints(8, True)),
    _packed(b"B", ">B", _ints(8, False)),
    _packed(b"s", ">h", _ints(16, True)),
    _packed(b"u", ">H", _ints(16, False)),
    _packed(b"I", ">i", _ints(32, True)),
    _packed(b"i", ">I", _ints(32, False)),
    _packed(b"l", ">q", _ints(64, True)),
    _packed(b"L", ">Q", _ints(64, False)),
    _packed(b"f", ">f", st.floats(width=32)),
    _packed(b"d", ">d", st.floats()),
    st.tuples(st.integers(0, 255), _ints(32, False)).map(lambda sv: b"D" + struct.pack(">BI", *sv)),
    _long_bytes(b"S", _ANY_BYTES),
    _long_bytes(b"x", st.binary(max_size=40)),
    _packed(b"T", ">Q", _TIMESTAMPS),
    st.just(b"V"),
)
"""Every AMQP 0-9-1 field type RabbitMQ knows, but the containers, over its whole range."""
UNKNOWN = st.tuples(st.sampled_from(b"ZzeE?"), st.binary(max_size=8)).map(
    lambda kb: bytes((kb[0],)) + kb[1]
)
"""A type byte no peer knows, with some bytes after it."""


def _table_of(fields: list[tuple[bytes, bytes]]) -> bytes:
    return table(b"".join(short(key) + value for key, value in fields))


def _array_of(values: list[bytes]) -> bytes:
    return table(b"".join(values))  # same framing: a u32 size, then the encoded values


def _containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    keys = st.one_of(_TEXT, st.binary(max_size=12)).filter(lambda k: len(k) < 256)
    return st.one_of(
        st.lists(st.tuples(keys, children), max_size=5).map(lambda f: b"F" + _table_of(f)),
        st.lists(children, max_size=5).map(lambda v: b"A" + _array_of(v)),
    )


FIELD_VALUES = st.recursive(SCALARS, _containers, max_leaves=12)
"""A field value of any type, tables and arrays nested a few levels."""


def deep_table(depth: int, array: bool) -> bytes:
    """A header table whose one field holds tables (or arrays) nested ``depth`` deep."""
    value = b"V"
    for _ in range(depth):
        value = b"A" + _array_of([value]) if array else b"F" + _table_of([(b"n", value)])
    return _table_of([(b"deep", value)])


def large_table(size: int) -> bytes:
    """A header table of about ``size`` bytes: many small fields and one long string."""
    fields = [(f"k{i}".encode(), b"I" + struct.pack(">i", i)) for i in range(200)]
    filler = max(0, size - 2000)
    fields.append((b"filler", b"S" + struct.pack(">I", filler) + b"z" * filler))
    return _table_of(fields)


HEADERS: tuple[st.SearchStrategy[tuple[str, bytes]], ...] = (
    st.lists(st.tuples(st.one_of(_TEXT, st.binary(max_size=12)).filter(lambda k: len(k) < 256),
                       FIELD_VALUES), max_size=6).map(lambda f: ("headers:fields", _table_of(f))),
    st.tuples(st.integers(1, 3000), st.booleans()).map(
        lambda da: ("headers:deep", deep_table(*da))
    ),
    st.sampled_from([1_000, 60_000, 120_000, FRAME_MAX - 2_000, FRAME_MAX - 200, FRAME_MAX,
                     FRAME_MAX + 10_000]).map(lambda n: ("headers:large", large_table(n))),
    st.lists(st.tuples(_TEXT.filter(lambda k: len(k) < 256), UNKNOWN), min_size=1,
             max_size=2).map(lambda f: ("headers:unknown-type", _table_of(f))),
    st.binary(max_size=30).map(lambda raw: ("headers:garbage", table(raw))),
)  # fmt: skip


# -- properties ------------------------------------------------------------------------------


def _short(*common: bytes) -> st.SearchStrategy[bytes]:
    """A short string property: one of ``common``, text, or bytes that may not be UTF-8."""
    raw = st.one_of(st.sampled_from(common), _TEXT, st.binary(max_size=60)) if common else (
        st.one_of(_TEXT, st.binary(max_size=60))
    )  # fmt: skip
    return raw.filter(lambda b: len(b) < 256).map(short)


_OCTET = st.integers(0, 255).map(lambda v: bytes((v,)))
TYPES = st.one_of(st.just(b""), _TEXT, st.binary(max_size=20)).filter(
    lambda b: len(b) < 256 and b not in NOT_FUZZED
)
NOT_FUZZED: set[bytes] = set()
"""Task names the fuzz must not call (the app's other tasks: their runs are not counted)."""
PROPERTIES: dict[str, st.SearchStrategy[bytes]] = {
    "content_type": _short(CONTENT_TYPE.encode(), CONTENT_TYPE.encode(), b"application/json",
                           b"application/python-pickle", b"", b"APPLICATION/X-MSGPACK",
                           b"application/x-msgpack; charset=\xff"),
    "content_encoding": _short(b"gzip", b"utf-8", b"base64", b"\xff\xfe"),
    # RabbitMQ refuses any but 1 and 2 (406 PRECONDITION_FAILED): rarely anything else.
    "delivery_mode": st.sampled_from([1, 2, 1, 2, 1, 2, 1, 2, 0, 3]).map(lambda v: bytes((v,))),
    "priority": _OCTET,
    "correlation_id": _short(),
    "reply_to": _short(b"", b"amq.rabbitmq.reply-to", b"amq.rabbitmq.reply-to.g2dkAAA",
                       b"no-such-queue", b"amq.gen-x"),
    "expiration": _short(b"0", b"1", b"60000", b"4294967295", b"99999999999999999999", b"-1",
                         b"1.5", b"abc", b""),
    "message_id": _short(b"", b"a"),
    "timestamp": _TIMESTAMPS.map(lambda v: struct.pack(">Q", v)),
    "type": TYPES.map(short),
    "user_id": _short(b"guest", b"", b"root"),
    "app_id": _short(),
    "cluster_id": _short(),
}  # fmt: skip


# -- bodies ----------------------------------------------------------------------------------

_MSGPACK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=10), st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=8,
)  # fmt: skip
_META = st.one_of(
    st.just({}),
    st.dictionaries(
        st.sampled_from(["a", "d", "t", "eta", "exp", "sf", "p", "r", "ir", "dd", "zz"]),
        _MSGPACK,
        max_size=3,
    ),
)


def _packb(value: Any) -> bytes:
    return bytes(msgpack.packb(value))


BODIES: tuple[st.SearchStrategy[tuple[str, bytes]], ...] = (
    _META.map(lambda meta: ("body:schema2", _packb([2, [_TAG_PLACEHOLDER], {}, meta]))),
    _META.map(lambda meta: ("body:schema2", _packb([2, [_TAG_PLACEHOLDER], {}, meta]))),
    st.just(("body:schema1", _packb([[_TAG_PLACEHOLDER], {}]))),
    st.just(("body:empty", b"")),
    st.binary(max_size=200).map(lambda raw: ("body:garbage", raw)),
    _MSGPACK.map(lambda value: ("body:wrong-shape", _packb(value))),
    st.tuples(_MSGPACK, _MSGPACK, _MSGPACK).map(lambda v: ("body:wrong-shape", _packb([2, *v]))),
    st.just(("body:large", _packb([2, [_TAG_PLACEHOLDER], {}, {"pad": "p" * 300_000}]))),
)


def _tenths(n: int) -> st.SearchStrategy[bool]:
    """True ``n`` times in 10 (st.booleans and st.integers favour their ends)."""
    return st.sampled_from([True] * n + [False] * (10 - n))


# How often (in tenths) a property is fuzzed: content_type, message_id and type are mostly
# taskq's own, so that many messages can run; user_id and expiration mostly make the broker
# refuse the message, so they are fuzzed less.
_FUZZED_IN_TENTHS = {"content_type": 3, "message_id": 3, "user_id": 1, "expiration": 1}
_OWN = {"content_type": st.just(short(CONTENT_TYPE.encode())),
        "message_id": st.uuids().map(lambda u: short(f"fuzz-{u}".encode())),
        "type": st.just(short(PROBE.encode()))}  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> FuzzMessage:
    """A message a foreign producer may publish: random properties, headers and body."""
    kinds: list[str] = []
    props: dict[str, bytes] = {}
    headers: tuple[tuple[str, bytes], ...] = ()
    for name in PROPERTY_ORDER:
        if name == "headers":
            if draw(_tenths(5)):  # its table: picked in turn by generate(), as the body is
                props[name] = b""
                headers = draw(st.tuples(*HEADERS))
        elif draw(_tenths(_FUZZED_IN_TENTHS.get(name, 2))):
            props[name] = draw(PROPERTIES[name])
            kinds.append(name)
        elif name in _OWN:
            props[name] = draw(_OWN[name])
    # Every kind of body is drawn, and generate() picks one in turn: which kinds 80 draws
    # cover must not depend on how hypothesis happens to explore (it changes with the filters,
    # and with what else the process imported); header tables likewise.
    bodies = draw(st.tuples(*BODIES))
    return FuzzMessage(props, b"", tuple(kinds), bodies, headers)


def generate(
    count: int, *, seed: int | None = None, exclude: Sequence[str] = ()
) -> list[FuzzMessage]:
    """``count`` messages drawn by hypothesis, the same ones on every call with the same
    ``seed`` (None: hypothesis's derandomized order), each tagged with its index. Task names
    in ``exclude`` are never drawn as the ``type``."""
    NOT_FUZZED.clear()
    NOT_FUZZED.update(name.encode() for name in exclude)
    drawn: list[FuzzMessage] = []

    @settings(
        max_examples=count, deadline=None, database=None, derandomize=seed is None,
        suppress_health_check=list(HealthCheck), phases=[Phase.generate],
    )  # fmt: skip
    @given(messages())
    def collect(message: FuzzMessage) -> None:
        drawn.append(message)

    run: Callable[[], None] = collect if seed is None else with_seed(seed)(collect)
    run()
    tables = itertools.count()
    return [
        message.with_body(tag).with_headers(next(tables) if message.headers else 0).with_tag(tag)
        for tag, message in enumerate(drawn[:count])
    ]
