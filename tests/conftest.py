"""Fixtures: each test gets its own prefix; everything it declares is deleted afterwards.

Every test that starts a worker runs twice (see ``pytest_generate_tests``): ``one-queue``, the
worker on the queues the test gives it, and ``two-queues``, the same worker also consuming the
extra queue (tests/apps/noise.py), where noise tasks arrive while the test runs. Deliveries of
two queues then share the worker's consume channel and finish out of order: the configuration
that hid the multi-queue ack bug of issue 9. A test that asserts totals of everything its worker
does (counters, the active set, a stats reply) is marked ``idle_extra_queue``: its worker still
consumes the extra queue, but nothing is sent there.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import types
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.apps import noise
from tests.cluster_support import Cluster
from tests.support import (
    PREFIXES_USED,
    VARIANT,
    delete_topology,
    feed_noise,
    sweep_prefixes,
    unique_prefix,
)

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest on users' test files

ONE_QUEUE, TWO_QUEUES = "one-queue", "two-queues"

# What starts a worker in a test (tests.support); a test function, fixture, helper or class of
# the test's module that calls one of these, directly or through another, starts one too.
WORKER_STARTERS = frozenset({"running_worker", "make_worker", "WorkerProcess"})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Sweep what the tests' own cleanups missed, so that a run leaves nothing behind."""
    swept = sweep_prefixes(PREFIXES_USED)
    if swept:
        print(f"\nswept {len(swept)} queue(s)/exchange(s) left by tests: {sorted(swept)[:8]}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The 3-node test cluster (scripts/cluster.sh), started if its nodes do not answer.

    scripts/test.sh starts it before pytest and removes it at the end. A plain pytest run
    that started it stops it at the end, unless it runs under pytest-xdist: other worker
    processes may still use it (``bash scripts/cluster.sh down`` then removes it).
    """
    found = Cluster.from_env()
    started = found.ensure_up()
    yield found
    if started and "PYTEST_XDIST_WORKER" not in os.environ:
        found.run("down")


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def cluster_prefix(cluster: Cluster, prefix: str) -> Iterator[str]:
    """The test's prefix; everything of it is deleted from the cluster afterwards."""
    yield prefix
    cluster.delete_prefix(prefix)


@pytest.fixture
async def topology_cleanup(prefix: str) -> AsyncIterator[set[str]]:
    """Yields a set: add the queue names (short) a test uses; they are deleted at the end."""
    queues: set[str] = {"default"}
    yield queues
    await delete_topology(prefix, queues)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    opted_out = any(m.name == "one_queue_only" for m in metafunc.definition.iter_markers())
    if not opted_out and _starts_a_worker(metafunc):
        metafunc.parametrize("worker_queues", [ONE_QUEUE, TWO_QUEUES], indirect=True)


@pytest.fixture(autouse=True)
def worker_queues(request: pytest.FixtureRequest) -> Iterator[str]:
    """The variant of a test that starts a worker (``one-queue`` for every other test)."""
    variant: str = getattr(request, "param", ONE_QUEUE)
    if variant == ONE_QUEUE:
        yield variant
        return
    request.getfixturevalue("topology_cleanup").add(noise.EXTRA_QUEUE)
    VARIANT.extra_queue = noise.EXTRA_QUEUE
    VARIANT.busy = request.node.get_closest_marker("idle_extra_queue") is None
    try:
        if VARIANT.busy:
            request.getfixturevalue("noise_feeder")
        yield variant
    finally:
        VARIANT.extra_queue, VARIANT.busy = None, False


@pytest.fixture
async def noise_feeder(prefix: str) -> AsyncIterator[None]:
    """Feeds noise tasks to the extra queue from the test's start to its end."""
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed_noise(prefix, stop))
    yield
    stop.set()
    await asyncio.wait_for(feeder, timeout=30)


def _starts_a_worker(metafunc: pytest.Metafunc) -> bool:
    starters = _worker_starters(metafunc.module)
    used = [metafunc.function] + [
        getattr(metafunc.module, name)
        for name in metafunc.fixturenames
        if name in vars(metafunc.module)
    ]
    return any(_calls(obj, starters) for obj in used)


def _worker_starters(module: types.ModuleType) -> set[str]:
    """WORKER_STARTERS and the names of the module's own functions and classes that call one
    of them, directly or through each other."""
    own = {
        name: obj
        for name, obj in vars(module).items()
        if (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj))
        and getattr(inspect.unwrap(obj), "__module__", None) == module.__name__
    }
    starters = set(WORKER_STARTERS)
    grew = True
    while grew:
        grew = False
        for name, obj in own.items():
            if name not in starters and _calls(obj, starters):
                starters.add(name)
                grew = True
    return starters


def _calls(obj: object, names: set[str]) -> bool:
    try:
        source = inspect.getsource(inspect.unwrap(obj))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    return any(re.search(rf"\b{re.escape(name)}\(", source) for name in names)
