"""Text that came from a producer, made safe to print, log and encode.

The transport keeps short strings that are not UTF-8 (another client's ``type`` or
``message_id``) as lone surrogates, so that a dead-lettered copy carries the producer's
bytes unchanged. No terminal, log handler or msgpack encoder takes lone surrogates: wherever
such a value is shown or sent on, :func:`printable` turns those bytes into ``\\x`` escapes.
"""

from __future__ import annotations


def printable(value: str | None) -> str:
    """``value`` with bytes that were not UTF-8 as ``\\xNN`` escapes ("" for None)."""
    if not value:
        return ""
    if value.isascii():  # the usual case, and the cheap one
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
