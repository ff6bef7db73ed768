"""Which publish a broker refused when it closed a confirm channel (pure).

RabbitMQ refuses a publish by closing its channel: 404 for an exchange that does not exist,
403 for one the user may not write to, 406 for a body over ``max_message_size``. Every publish
still unconfirmed on that channel loses its confirm with it, but only one of them was refused:
the others were routed, or never read, and must be sent again on a new channel. The broker's
reply text names what it refused; this module finds the publish it means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

NOT_FOUND = 404
ACCESS_REFUSED = 403
PRECONDITION_FAILED = 406

# "NOT_FOUND - no exchange 'x' in vhost '/'",
# "ACCESS_REFUSED - write access to exchange 'x' in vhost '/' refused for user 'u'"
_EXCHANGE = re.compile(r"exchange '((?:[^']|'(?! in vhost))*)' in vhost")
# "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728"
_TOO_LARGE = re.compile(r"message size (\d+) is larger than configured max size (\d+)")


def blamed(code: int, reply_text: str, publishes: Sequence[tuple[str, int]]) -> int | None:
    """The index in ``publishes`` (``(exchange, body size)`` of the unconfirmed publishes, in
    the order they were written) of the one the broker refused with ``code`` and
    ``reply_text``; None if the text names none of them (then every one is suspect)."""
    if code in (NOT_FOUND, ACCESS_REFUSED):
        found = _EXCHANGE.search(reply_text)
        if found is not None:
            return _first(publishes, lambda exchange, _: exchange == found.group(1))
    elif code == PRECONDITION_FAILED:
        sizes = _TOO_LARGE.search(reply_text)
        if sizes is not None:
            limit = int(sizes.group(2))
            return _first(publishes, lambda _, size: size > limit)
    return None


def _first(publishes: Sequence[tuple[str, int]], match: Callable[[str, int], bool]) -> int | None:
    # The broker reads a channel in order: the first publish that fits is the refused one.
    return next((i for i, (exchange, size) in enumerate(publishes) if match(exchange, size)), None)


def names_one(code: int, reply_text: str) -> bool:
    """Whether the broker's ``reply_text`` names what it refused (an exchange, a size): then
    :func:`blamed` tells whether one publish is the refused one."""
    if code in (NOT_FOUND, ACCESS_REFUSED):
        return _EXCHANGE.search(reply_text) is not None
    return code == PRECONDITION_FAILED and _TOO_LARGE.search(reply_text) is not None
