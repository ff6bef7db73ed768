"""taskq's pytest plugin: fixtures that test your tasks against a real RabbitMQ.

Installed with taskq and registered as the ``taskq.testing`` plugin (a ``pytest11`` entry
point): nothing to enable. It adds fixtures and one ini option, and does nothing until a test
asks for one of its fixtures (no autouse fixture; importing it connects to nothing).

Point it at your App with the ini option ``taskq_app = "module:attribute"`` (``attribute``
defaults to ``app``), or override the ``taskq_app`` fixture in a conftest.py. Then:

- ``taskq_prefix``: a throwaway prefix, ``test-`` and random hex digits;
- ``taskq_client``: your App under that prefix, open for sending; afterwards it is closed, the
  queues and exchanges of the prefix are deleted and the App gets its own prefix back;
- ``taskq_worker``: a real Worker for that App, running on the test's event loop, stopped
  gracefully afterwards;
- ``taskq_outcome``: ``await taskq_outcome(handle, timeout=10)``, the result, or an
  AssertionError that says what the task's status was at the deadline;
- ``taskq_wait_for``: ``await taskq_wait_for(check, timeout=15)``, polls an async check;
- ``taskq_sync_client``, ``taskq_sync_worker``, ``taskq_outcome_sync``: the same for tests
  without an event loop, through the App's sync facade (``app.sync``).

The async fixtures need pytest-asyncio (0.23 or later), in ``auto`` or ``strict`` mode, with
the tests and fixtures on one event loop (its default: one loop per test).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from ..app import App
    from ..handle import TaskHandle
    from ..sync import SyncClient, SyncHandle
    from ..worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
T = TypeVar("T")

INI_APP = "taskq_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_APP, "the App taskq's fixtures test, as module:attribute", default="")


def _async_fixture(func: F) -> F:
    """An async fixture in pytest-asyncio's auto and strict modes alike; without
    pytest-asyncio, a fixture that fails saying what to install."""
    try:
        import pytest_asyncio
    except ImportError:

        def missing() -> None:
            pytest.fail(
                f"taskq's {func.__name__} fixture needs pytest-asyncio: pip install pytest-asyncio",
                pytrace=False,
            )

        missing.__doc__ = func.__doc__
        return pytest.fixture(name=func.__name__)(missing)  # type: ignore[return-value]
    return pytest_asyncio.fixture(func)  # type: ignore[return-value]


class AwaitOutcome(Protocol):
    """The type of the ``taskq_outcome`` fixture (taskq.testing.polling.outcome)."""

    async def __call__(self, handle: TaskHandle[R], timeout: float = ...) -> R: ...


class OutcomeSync(Protocol):
    """The type of the ``taskq_outcome_sync`` fixture (taskq.testing.polling.outcome_sync)."""

    def __call__(self, handle: SyncHandle[R], timeout: float = ...) -> R: ...


class WaitFor(Protocol):
    """The type of the ``taskq_wait_for`` fixture (taskq.testing.polling.eventually)."""

    async def __call__(
        self,
        check: Callable[[], Awaitable[T]],
        *,
        timeout: float = ...,
        interval: float = ...,
        what: str = ...,
    ) -> T: ...


@pytest.fixture
def taskq_app(request: pytest.FixtureRequest) -> App:
    """Your App, as the ini option ``taskq_app = "module:attribute"`` names it.

    Override this fixture in a conftest.py to give the App another way. The other fixtures
    re-prefix and open it; leave it closed.
    """
    from ..cli.common import UsageError, load_app

    spec = str(request.config.getini(INI_APP)).strip()
    if not spec:
        pytest.fail(
            "taskq's fixtures do not know your App: set the ini option "
            '`taskq_app = "module:app"` or override the `taskq_app` fixture',
            pytrace=False,
        )
    try:
        return load_app(spec)
    except UsageError as exc:
        pytest.fail(f"taskq_app = {spec!r}: {exc}", pytrace=False)


@pytest.fixture
def taskq_prefix() -> str:
    """A prefix no other test uses (``test-`` and 12 random hex digits)."""
    from .isolation import throwaway_prefix

    return throwaway_prefix()


@_async_fixture
async def taskq_client(taskq_app: App, taskq_prefix: str) -> AsyncIterator[App]:
    """Your App under ``taskq_prefix``, open for sending (``await task.delay(...)``).

    Afterwards the App is closed, every queue and exchange under the prefix for its queues
    is deleted, and the App gets its own prefix back. Data a Redis or PostgreSQL result
    store kept under the prefix is not removed (Redis expires it after ``result_ttl``).
    """
    from .isolation import delete_topology, prefixed, queues_of

    with prefixed(taskq_app, taskq_prefix):
        try:
            async with taskq_app:
                yield taskq_app
        finally:
            await delete_topology(taskq_app.settings, queues_of(taskq_app))


@_async_fixture
async def taskq_worker(taskq_client: App) -> AsyncIterator[Worker]:
    """A real Worker for ``taskq_client`` (every queue of its tasks), running on the test's
    event loop from before the test until after it, then stopped gracefully.

    A test can read its ``counters`` and ``active`` tasks. For other options (queues,
    concurrency), run your own: ``async with taskq.testing.worker.running(Worker(...))``.
    """
    from ..worker import Worker
    from .worker import running

    async with running(Worker(taskq_client)) as worker:
        yield worker


@pytest.fixture
def taskq_outcome() -> AwaitOutcome:
    """``await taskq_outcome(handle, timeout=10)``: the task's result.

    Raises TaskFailed if the task failed, and AssertionError if it did not finish within
    ``timeout`` seconds, saying what its status was then (see taskq.testing.polling.outcome).
    """
    from .polling import outcome

    return outcome


@pytest.fixture
def taskq_wait_for() -> WaitFor:
    """``await taskq_wait_for(check, timeout=15, what="...")``: poll the async ``check`` until
    it returns something truthy and return that; AssertionError naming ``what`` and the last
    value past the deadline (see taskq.testing.polling.eventually)."""
    from .polling import eventually

    return eventually


# -- tests without an event loop -------------------------------------------------------------


@pytest.fixture
def taskq_sync_client(taskq_app: App, taskq_prefix: str) -> Iterator[SyncClient]:
    """For a test without an event loop: your App under ``taskq_prefix`` and its sync facade
    (``app.sync``, also what your own code gets from it), open on its own loop thread.

    Send with ``taskq_sync_client.send(add, 2, 3)``. Afterwards the facade is closed (and the
    App with it), the prefix's queues and exchanges are deleted, and the App gets its own
    prefix back.
    """
    from .isolation import delete_topology, prefixed, queues_of

    with prefixed(taskq_app, taskq_prefix):
        client = taskq_app.sync
        try:
            yield client
        finally:
            client.close()
            asyncio.run(delete_topology(taskq_app.settings, queues_of(taskq_app)))


@pytest.fixture
def taskq_sync_worker(taskq_sync_client: SyncClient) -> Iterator[Worker]:
    """``taskq_worker`` for a test without an event loop: a real Worker running on the loop
    thread of ``taskq_sync_client``, stopped gracefully afterwards."""
    from ..worker import Worker
    from .worker import running

    block = contextlib.AsyncExitStack()

    async def start() -> Worker:
        return await block.enter_async_context(running(Worker(taskq_sync_client.app)))

    worker = taskq_sync_client.run(start())
    try:
        yield worker
    finally:
        taskq_sync_client.run(block.aclose())


@pytest.fixture
def taskq_outcome_sync() -> OutcomeSync:
    """``taskq_outcome_sync(handle, timeout=10)``: ``taskq_outcome`` for a handle of the sync
    facade, blocking (see taskq.testing.polling.outcome_sync)."""
    from .polling import outcome_sync

    return outcome_sync
