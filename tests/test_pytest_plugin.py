"""taskq's pytest plugin (taskq.testing.pytest_plugin), used as users use it: test files run by
pytester in a pytest subprocess, which finds the plugin through its entry point, against the
real broker."""

from __future__ import annotations

import re
import shutil

import aio_pika
import aiormq
import pytest

from taskq.topology import Names, every_name
from tests.support import BROKER, REPO

SAMPLE = REPO / "examples" / "testing_plugin"

TASKS = f"""
import asyncio

from taskq import App

app = App("plugin-user", broker={BROKER!r}, shutdown_timeout=0.5)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def hang() -> None:
    await asyncio.Event().wait()
"""

# The user's tests. The two that fail on purpose show what taskq_outcome says at a deadline;
# the last checks that the App got its own prefix back. Each writes its prefix to a file, for
# the cleanup check. MARK is the pytest-asyncio marker that strict mode needs.
USER_TESTS = """
import pathlib

import pytest

from tasks import add, app, hang


def remember(prefix):
    with pathlib.Path("prefixes.txt").open("a") as file:
        file.write(prefix + "\\n")


MARK
async def test_add(taskq_client, taskq_worker, taskq_outcome, taskq_wait_for, taskq_prefix):
    remember(taskq_prefix)
    assert taskq_prefix.startswith("test-")
    assert taskq_client is app and app.settings.prefix == taskq_prefix
    assert taskq_worker.app is app
    handle = await add.delay(2, 3)
    assert await taskq_outcome(handle, timeout=10) == 5

    async def ran():
        return taskq_worker.counters.succeeded

    assert await taskq_wait_for(ran, timeout=10, what="the worker to count it") == 1


MARK
async def test_started_at_the_deadline(taskq_worker, taskq_outcome, taskq_prefix):
    remember(taskq_prefix)
    handle = await hang.delay()
    await taskq_outcome(handle, timeout=0.5)


MARK
async def test_pending_at_the_deadline(taskq_client, taskq_outcome, taskq_prefix):
    remember(taskq_prefix)
    handle = await add.delay(1, 1)
    await taskq_outcome(handle, timeout=0.5)


def test_the_app_has_its_own_prefix_back():
    assert app.settings.prefix == "taskq"
"""

CONFTEST_APP = """
import pytest

from tasks import app


@pytest.fixture
def taskq_app():
    return app
"""


async def gone(prefix: str) -> list[str]:
    """The queues and exchanges taskq may declare under ``prefix`` that still exist."""
    queues, exchanges = every_name(Names(prefix), ["default"])
    left = []
    connection = await aio_pika.connect(BROKER)
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                channel = await connection.channel()  # a failed passive declare closes it
                try:
                    if kind == "queue":
                        await channel.declare_queue(name, passive=True)
                    else:
                        await channel.declare_exchange(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    continue
                left.append(name)
                await channel.close()
    finally:
        await connection.close()
    return left


@pytest.mark.parametrize("mode", ["auto", "strict"])
async def test_the_fixtures_run_a_users_tasks_and_clean_up(
    pytester: pytest.Pytester, mode: str
) -> None:
    """In auto mode the ini option names the App; in strict mode a conftest overrides the
    taskq_app fixture instead."""
    pytester.makepyfile(tasks=TASKS)
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(test_user=USER_TESTS.replace("MARK", mark))
    ini = [f"asyncio_mode = {mode}", "asyncio_default_fixture_loop_scope = function"]
    if mode == "auto":
        ini.append("taskq_app = tasks:app")
    else:
        pytester.makeconftest(CONFTEST_APP)
    pytester.makeini("[pytest]\n" + "\n".join(ini) + "\nfilterwarnings = error\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)

    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: task hang[[]*[]] did not finish within 0.5 s: at the deadline "
            "it was STARTED: worker plugin-user@* runs attempt 1",
            "*AssertionError: task add[[]*[]] did not finish within 0.5 s: at the deadline "
            "it was PENDING: no worker started it (does a worker run and consume its queue?)",
        ],
        consecutive=False,
    )
    prefixes = (pytester.path / "prefixes.txt").read_text().split()
    assert len(set(prefixes)) == 3, prefixes
    for prefix in prefixes:
        assert await gone(prefix) == [], f"left behind under {prefix}"


SYNC_USER_TESTS = """
import pathlib

from tasks import add, app, hang


def test_add(taskq_sync_client, taskq_sync_worker, taskq_outcome_sync, taskq_prefix):
    pathlib.Path("prefixes.txt").write_text(taskq_prefix)
    assert taskq_sync_client is app.sync and app.settings.prefix == taskq_prefix
    handle = app.sync.send(add, 2, 3)  # what code under test that uses app.sync does
    assert taskq_outcome_sync(handle, timeout=10) == 5


def test_started_at_the_deadline(taskq_sync_client, taskq_sync_worker, taskq_outcome_sync):
    taskq_outcome_sync(taskq_sync_client.send(hang), timeout=0.5)


def test_the_app_has_its_own_prefix_back():
    assert app.settings.prefix == "taskq"
"""


async def test_the_sync_fixtures_run_a_users_tasks_and_clean_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tasks=TASKS, test_user=SYNC_USER_TESTS)
    pytester.makeini("[pytest]\ntaskq_app = tasks:app\nfilterwarnings = error\n")

    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", timeout=120
    )

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: task hang[[]*[]] did not finish within 0.5 s: at the deadline "
            "it was STARTED: worker plugin-user@* runs attempt 1",
        ]
    )
    prefix = (pytester.path / "prefixes.txt").read_text()
    assert await gone(prefix) == [], f"left behind under {prefix}"


def test_without_an_app_the_fixtures_say_how_to_name_one(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plain():
            pass

        async def test_needs_the_app(taskq_client):
            pass

        def test_needs_the_app_too(taskq_sync_client):
            pass
        """
    )
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)

    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        ['*taskq\'s fixtures do not know your App: set the ini option `taskq_app = "module:app"`*']
    )


def test_without_pytest_asyncio_the_async_fixtures_say_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_needs_an_event_loop(taskq_worker):
            pass
        """
    )
    # A project without pytest-asyncio, as the plugin sees it: the import fails.
    pytester.makepyfile(block_pytest_asyncio="import sys\n\nsys.modules['pytest_asyncio'] = None\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "block_pytest_asyncio", timeout=60
    )

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*taskq's taskq_worker fixture needs pytest-asyncio: pip install pytest-asyncio*"]
    )


def test_the_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider", timeout=60)

    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*taskq_prefix*",
            "*A prefix no other test uses*",
            "*taskq_worker*",
            "*A real Worker for*",
            "*taskq_outcome*",
        ],
        consecutive=False,
    )


def test_the_sample_project_passes_its_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(SAMPLE, pytester.path, dirs_exist_ok=True)
    monkeypatch.setenv("TASKQ_BROKER", BROKER)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)

    result.assert_outcomes(passed=5)


def test_the_guide_shows_the_sample_project_as_it_is() -> None:
    """Each block of docs/guide/testing.md whose first line is ``# PATH`` is that file of the
    sample project, whole: the guide cannot drift from what the test above runs."""
    guide = (REPO / "docs" / "guide" / "testing.md").read_text()
    blocks = re.findall(r"```\w+\n# (\S+)\n(.*?)```", guide, flags=re.DOTALL)
    shown = dict(blocks)
    assert set(shown) == {"tasks.py", "pyproject.toml", "tests/test_tasks.py"}, set(shown)
    for path, text in shown.items():
        assert text == (SAMPLE / path).read_text(), f"the guide's {path} is not the sample's"
