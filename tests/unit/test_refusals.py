"""Which unconfirmed publish the broker's reply text blames when it closes a confirm channel."""

from __future__ import annotations

from taskq.transport.refusals import blamed

PUBLISHES = [("tq.a", 10), ("tq.b", 200), ("tq.a", 300), ("tq.b", 5)]


def test_a_missing_exchange_blames_the_first_publish_to_it() -> None:
    text = "NOT_FOUND - no exchange 'tq.b' in vhost '/'"
    assert blamed(404, text, PUBLISHES) == 1


def test_a_refused_write_blames_the_first_publish_to_that_exchange() -> None:
    text = "ACCESS_REFUSED - write access to exchange 'tq.a' in vhost 'v' refused for user 'u'"
    assert blamed(403, text, PUBLISHES) == 0


def test_an_exchange_name_with_a_quote_is_read_whole() -> None:
    assert blamed(404, "NOT_FOUND - no exchange 'it's' in vhost '/'", [("it's", 1)]) == 0


def test_a_body_too_large_blames_the_first_publish_over_the_limit() -> None:
    text = "PRECONDITION_FAILED - message size 300 is larger than configured max size 250"
    assert blamed(406, text, PUBLISHES) == 2


def test_a_text_that_names_no_publish_blames_none() -> None:
    assert blamed(404, "NOT_FOUND - no exchange 'tq.c' in vhost '/'", PUBLISHES) is None
    assert blamed(406, "PRECONDITION_FAILED - invalid expiration", PUBLISHES) is None
    assert blamed(0, "connection lost", PUBLISHES) is None
