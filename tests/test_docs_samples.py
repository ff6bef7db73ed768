"""Every ```python block of the docs (docs/**/*.md) and of README.md runs against the real broker.

The convention the pages follow (docs/contributing.md says it to writers):

- a sample runs on its own, in a fresh namespace, with ``TASKQ_PREFIX`` set to a prefix of its
  own (everything declared under it is deleted afterwards);
- it may use top-level ``await`` (it then runs as the body of a coroutine, as in
  ``python -m asyncio``), or none (``asyncio.run`` and ``app.sync`` work too);
- each App it opens (``async with app:``, ``app.sync``) gets an in-process Worker on the App's
  queues once it is open, as if ``taskq-worker`` ran beside it; the worker stops gracefully
  before the App closes;
- a block preceded by ``<!-- sample: pytest -->`` is a test module of the sample project
  ``examples/testing_plugin`` (or, when its first line names ``conftest.py``, that project's
  conftest): it runs with pytest in a copy of that project, and passes when pytest does;
- a block preceded by ``<!-- sample: skip -->`` (a fragment, or a sketch that needs servers the
  tests do not have) is not run.

A sample passes when it runs to its end without an exception; its own ``assert`` statements
check what it shows.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import re
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskq import App, Worker
from taskq.results import registry as store_registry
from taskq.topology import routes
from tests.support import BROKER, REPO, delete_topology

SKIP_MARK = "<!-- sample: skip -->"
PYTEST_MARK = "<!-- sample: pytest -->"
PLUGIN_SAMPLE = REPO / "examples" / "testing_plugin"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*$")
WORKER_START_TIMEOUT = 20.0
WORKER_STOP_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One ```python block: where it is and its code (dedented)."""

    path: str
    line: int
    code: str
    under_pytest: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def extract(text: str, path: str) -> Iterator[Sample]:
    """The ```python blocks of a Markdown text, but those preceded by the skip mark."""
    lines = text.splitlines()
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if start is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        closing = start["indent"] + "```"
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].rstrip() == closing), len(lines)
        )
        if previous != SKIP_MARK:
            code = textwrap.dedent("\n".join(lines[i + 1 : end]))
            yield Sample(path, i + 1, code, under_pytest=previous == PYTEST_MARK)
        previous = closing
        i = end + 1


def documented_samples() -> list[Sample]:
    """Every runnable sample of README.md and docs/, in page order."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [
        sample
        for page in pages
        for sample in extract(page.read_text(encoding="utf-8"), str(page.relative_to(REPO)))
    ]


SAMPLES = [sample for sample in documented_samples() if not sample.under_pytest]
PYTEST_SAMPLES = [sample for sample in documented_samples() if sample.under_pytest]


# -- the extractor --------------------------------------------------------------------------


def test_extract_honours_the_skip_mark_and_indented_fences() -> None:
    text = textwrap.dedent(
        """\
        ```python
        print(1)
        ```

        <!-- sample: skip -->

        ```python
        print(2)
        ```
        - a list item:

            ```python
            print(3)
            ```
        ```sh
        echo 4
        ```
        """
    )
    samples = list(extract(text, "page.md"))
    assert [(s.line, s.code) for s in samples] == [(1, "print(1)"), (12, "print(3)")]


def test_the_docs_have_samples_to_run() -> None:
    paths = {sample.path for sample in SAMPLES}
    assert "README.md" in paths
    assert {"docs/guide/sending.md", "docs/guide/results.md"} <= paths
    assert len(SAMPLES) >= 15 and len(PYTEST_SAMPLES) >= 4
    assert {sample.path for sample in PYTEST_SAMPLES} == {"docs/guide/testing.md"}


# -- running them ---------------------------------------------------------------------------


class WorkersBeside:
    """Patches App.open/close: each App opened gets an in-process Worker until it closes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.queues: set[str] = {"default"}
        self._running: dict[int, tuple[Worker, asyncio.Task[None]]] = {}
        real_open, real_close = App.open, App.close

        async def open_with_worker(app: App, *, connection_name: str | None = None) -> None:
            await real_open(app, connection_name=connection_name)
            await self._start(app)

        async def close_after_worker(app: App) -> None:
            await self._stop(app)
            await real_close(app)

        monkeypatch.setattr(App, "open", open_with_worker)
        monkeypatch.setattr(App, "close", close_after_worker)

    async def _start(self, app: App) -> None:
        # A name of its own: a worker the sample starts itself has the default name, and two
        # workers of one name would share one exclusive control queue.
        worker = Worker(app, name=f"docs-sample-{uuid.uuid4().hex[:8]}")
        partitions = app.settings.partitions_of
        self.queues.update(r for q in worker.queues for r in routes(q, partitions(q)))
        running = asyncio.create_task(worker.run())
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait(
            {running, ready}, timeout=WORKER_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if running.done():
            ready.cancel()
            running.result()  # the worker's error
        assert worker.ready.is_set(), f"the worker did not start within {WORKER_START_TIMEOUT} s"
        self._running[id(app)] = (worker, running)

    async def _stop(self, app: App) -> None:
        entry = self._running.pop(id(app), None)
        if entry is not None:
            worker, running = entry
            worker.stop()  # graceful: what it runs finishes and records its outcome first
            await asyncio.wait_for(running, timeout=WORKER_STOP_TIMEOUT)


def run_sample(code: str, filename: str) -> None:
    """Run ``code`` in a fresh namespace; with top-level await, as a coroutine's body."""
    compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "__docs_sample__"}
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(compiled, namespace))
    else:
        exec(compiled, namespace)


@pytest.mark.parametrize("sample", SAMPLES, ids=str)
def test_sample_runs(sample: Sample, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_PREFIX", prefix)
    # A sample may register a result store scheme: it must not outlive the sample (the
    # registry's own tests, later in the same process, check the built-in schemes).
    monkeypatch.setattr(store_registry, "_FACTORIES", dict(store_registry._FACTORIES))
    workers = WorkersBeside(monkeypatch)
    try:
        run_sample(sample.code, str(sample))
    finally:
        asyncio.run(delete_topology(prefix, workers.queues))


@pytest.mark.parametrize("sample", PYTEST_SAMPLES, ids=str)
def test_pytest_sample_passes(
    sample: Sample, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(PLUGIN_SAMPLE, pytester.path, dirs_exist_ok=True)
    first_line = sample.code.splitlines()[0]
    target = "conftest.py" if "conftest.py" in first_line else "tests/test_doc_sample.py"
    (pytester.path / target).write_text(sample.code)
    monkeypatch.setenv("TASKQ_BROKER", BROKER)
    monkeypatch.delenv("TASKQ_PREFIX", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("passed", 0) >= 1, result.stdout.str()[-3000:]
