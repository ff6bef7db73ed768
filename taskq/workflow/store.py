"""The optional result-store capability that chords need: an atomic join and run claims.

A store that has these two methods (Redis and PostgreSQL do) can hold a chord's join state;
``taskq.testing.contract`` has checks for them (``checks(joins=True)``). The AMQP store has
neither: sending a chord with it raises ConfigurationError before anything is sent.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..results.shared import Lease


@runtime_checkable
class JoinStore(Protocol):
    """What a result store needs to join chords exactly once."""

    async def join(self, join_id: str, index: int, size: int, value: bytes) -> list[bytes] | None:
        """Store ``value`` as member ``index`` of join ``join_id`` (of ``size`` members), in one
        atomic step, unless that member is stored already (a member that ran twice keeps its
        first value). Return every member's value in index order once all ``size`` are stored
        (on every call from then on: a redelivered last member must be able to send the
        callback again), else None. ResultUnavailable if the store cannot be reached."""

    async def claim(self, key: str, token: str) -> bool:
        """Claim ``key`` for ``token``, atomically: True if it was free or is held by ``token``
        already, False if another token holds it. ResultUnavailable if unreachable."""


def join_store_of(store: object) -> JoinStore | None:
    """``store`` (or the store object an App's lease of it shares) as a JoinStore, or None
    if it has not got the capability."""
    if isinstance(store, Lease):
        store = store.store
    return store if isinstance(store, JoinStore) else None
