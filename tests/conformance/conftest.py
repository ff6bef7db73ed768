"""Fixtures of the conformance tests: what any transport behind an App must do.

Every test here runs once per transport implementation (``native``, ``aio-pika``): an autouse
fixture sets ``TASKQ_TRANSPORT`` for the test, so each App built in it (the ``app`` fixture's,
or one a test builds itself) gets that transport from the environment. A test that is about
one implementation's internals is marked ``@pytest.mark.native_only("why")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskq import App
from taskq.transport import IMPLEMENTATIONS
from tests.support import BROKER


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "native_only(reason): a conformance test of the native client's internals"
    )


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The transport implementation this run of the test uses (``TASKQ_TRANSPORT``)."""
    native_only = request.node.get_closest_marker("native_only")
    if native_only is not None and request.param != "native":
        pytest.skip(f"native client only: {native_only.args[0] if native_only.args else ''}")
    monkeypatch.setenv("TASKQ_TRANSPORT", request.param)
    yield request.param


@pytest.fixture
def app(prefix: str, topology_cleanup: set[str], transport: str) -> App:
    """An App of the test's prefix with one task, ``add``, on the ``default`` queue (deleted
    after the test), on the transport of this run."""
    app = App(f"conformance-{prefix}", broker=BROKER, prefix=prefix)
    assert app.settings.transport == transport

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    return app
