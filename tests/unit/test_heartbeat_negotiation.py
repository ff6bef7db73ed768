"""The heartbeat taskq answers in Connection.TuneOk, from the URL's and the broker's."""

from __future__ import annotations

import pytest

from taskq.transport.connection import DEFAULT_HEARTBEAT, negotiate_heartbeat


@pytest.mark.parametrize(
    ("asked", "proposed", "agreed"),
    [
        (5, 60, 5),  # the URL's value wins, lower...
        (120, 60, 120),  # ...or higher
        (0, 60, 0),  # off, because the URL asked for it
        (None, 30, 30),  # nothing asked: the broker's proposal
        (None, 0, DEFAULT_HEARTBEAT),  # the broker proposes none: keep dead-peer detection
        (2, 0, 2),
    ],
)
def test_negotiate_heartbeat(asked: int | None, proposed: int, agreed: int) -> None:
    assert negotiate_heartbeat(asked, proposed) == agreed
