"""Fixtures of the conformance tests: what any transport behind an App must do."""

from __future__ import annotations

import pytest

from taskq import App
from tests.support import BROKER


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str]) -> App:
    """An App of the test's prefix with one task, ``add``, on the ``default`` queue (deleted
    after the test)."""
    app = App(f"conformance-{prefix}", broker=BROKER, prefix=prefix)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app
