"""Fixtures: each test gets its own prefix; everything it declares is deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support import delete_topology, unique_prefix


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def topology_cleanup(prefix: str) -> AsyncIterator[set[str]]:
    """Yields a set: add the queue names (short) a test uses; they are deleted at the end."""
    queues: set[str] = {"default"}
    yield queues
    await delete_topology(prefix, queues)
