"""Fixtures of the conformance tests: what any transport behind an App must do.

Every test here runs once per transport implementation (``native``, ``aio-pika``): an autouse
fixture sets ``TASKQ_TRANSPORT`` for the test, so each App built in it (the ``app`` fixture's,
or one a test builds itself, and the worker processes it starts) gets that transport from the
environment. A module about one implementation's internals says why in a module constant
``NATIVE_ONLY = "..."`` (skipped for aio-pika); a guarantee the aio-pika transport does not give
yet is named in ``AIO_PIKA_GAP = "..."`` (a strict xfail there, so the constant goes once it
passes).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskq import App
from taskq.transport import IMPLEMENTATIONS
from tests.support import BROKER


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The transport implementation this run of the test uses (``TASKQ_TRANSPORT``)."""
    native_only = getattr(request.module, "NATIVE_ONLY", None)
    if native_only is not None and request.param != "native":
        pytest.skip(f"native client only: {native_only}")
    gap = getattr(request.module, "AIO_PIKA_GAP", None)
    if gap is not None and request.param == "aio-pika":
        request.applymarker(pytest.mark.xfail(reason=gap, strict=True))
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
