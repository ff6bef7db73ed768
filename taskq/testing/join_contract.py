"""The optional join capability of the result-store contract (what chords need), as checks.

A store that implements ``taskq.workflow.JoinStore`` (``join`` and ``claim``) can hold a
chord's join; run these checks against it as you run ``taskq.testing.contract.checks()``::

    @pytest.mark.parametrize("check", join_checks(), ids=str)
    async def test_my_store_joins(check):
        await check(Contract(make_store))

They call the store directly (level ``"store"``), with two instances over the same storage
where it matters, and raise AssertionError when the store breaks the contract.
"""

from __future__ import annotations

import asyncio
import uuid

from .. import codec
from ..workflow.store import JoinStore, join_store_of
from .contract import Check, CheckRun, Contract, opened


def _joins(store: object) -> JoinStore:
    joins = join_store_of(store)
    assert joins is not None, f"{store!r} has no join() and claim(): it cannot hold chords"
    return joins


async def a_join_completes_with_every_value_in_order(contract: Contract) -> None:
    """Members joining out of order; the last gets every value by index, as does any call
    after (a redelivered last member must be able to send the callback again)."""
    join_id = f"join-{uuid.uuid4()}"
    async with opened(contract) as store:
        joins = _joins(store)
        for index in (2, 0):
            assert await joins.join(join_id, index, 3, codec.pack(index * 10)) is None
        done = await joins.join(join_id, 1, 3, codec.pack(10))
        assert done is not None and [codec.unpack(v) for v in done] == [0, 10, 20]
        again = await joins.join(join_id, 1, 3, codec.pack(10))
        assert again == done


async def a_member_that_joins_twice_keeps_its_first_value(contract: Contract) -> None:
    """A member that ran twice (a redelivery) counts once and keeps its first value."""
    join_id = f"join-{uuid.uuid4()}"
    async with opened(contract) as store:
        joins = _joins(store)
        assert await joins.join(join_id, 0, 2, codec.pack("first")) is None
        assert await joins.join(join_id, 0, 2, codec.pack("second")) is None
        done = await joins.join(join_id, 1, 2, codec.pack("other"))
        assert done is not None and [codec.unpack(v) for v in done] == ["first", "other"]


async def concurrent_members_never_miss_the_completion(contract: Contract) -> None:
    """Members joining at once from two store instances: at least one sees the join
    complete (else the callback would never be sent), and every complete answer is whole."""
    join_id = f"join-{uuid.uuid4()}"
    size = 40
    async with opened(contract) as one, opened(contract) as two:
        stores = [_joins(one), _joins(two)]
        answers = await asyncio.gather(
            *(stores[i % 2].join(join_id, i, size, codec.pack(i)) for i in range(size))
        )
    complete = [answer for answer in answers if answer is not None]
    assert complete, "no member saw the join complete"
    assert all([codec.unpack(v) for v in answer] == list(range(size)) for answer in complete)


async def a_claim_is_held_by_its_first_token(contract: Contract) -> None:
    """The first token claims a key; it may claim again (a redelivery of the same publish),
    another token may not, from any store instance."""
    key = f"claim-{uuid.uuid4()}"
    async with opened(contract) as one, opened(contract) as two:
        first, other = _joins(one), _joins(two)
        assert await first.claim(key, "token-a")
        assert await other.claim(key, "token-a")
        assert not await other.claim(key, "token-b")
        racing = f"claim-{uuid.uuid4()}"
        won = await asyncio.gather(*(first.claim(racing, f"t{i}") for i in range(10)))
        assert sum(won) == 1


_RUNS: list[CheckRun] = [
    a_join_completes_with_every_value_in_order,
    a_member_that_joins_twice_keeps_its_first_value,
    concurrent_members_never_miss_the_completion,
    a_claim_is_held_by_its_first_token,
]


def join_checks() -> list[Check]:
    """The checks of the join capability (for stores that hold chords)."""
    return [Check(run.__name__, run, "store", True) for run in _RUNS]
