"""The RESP2 encoding of the Redis store's pipelined commands."""

from __future__ import annotations

import hiredis

from taskq.results.redis_wire import encode


def test_commands_are_resp_arrays_of_bulk_strings() -> None:
    assert encode(["EVALSHA", "ab", 2, b"\x00\xff", "é"]) == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$2\r\n\x00\xff\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_a_server_reads_what_is_encoded() -> None:
    # hiredis parses a request the way Redis would: an array of the arguments as bytes.
    reader = hiredis.Reader()
    reader.feed(encode(["SET", "key", 42]) + encode(["GET", b"k\r\ney"]))
    assert reader.gets() == [b"SET", b"key", b"42"]
    assert reader.gets() == [b"GET", b"k\r\ney"]
