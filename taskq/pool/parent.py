"""The worker's side of the process pool: start children, hand each one job at a time,
kill one past its hard timeout, replace the dead and the worn out.

Children are fresh interpreters started with exec (what multiprocessing calls "spawn"), not
forks: the worker runs an event loop, a thread pool and open broker connections, and a fork
of a process with threads can inherit a lock held by another thread (Python 3.12 warns about
it). A child pays its imports once, when it starts; afterwards a job costs two pipe writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import codec
from .. import outcome as oc
from ..exceptions import ConfigurationError, DecodeError, PoolProcessDied, TaskHardTimeout
from .frames import HEADER, Job, decode_outcome

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("taskq.pool")

Progress = Callable[[float, "str | None"], Awaitable[None]]

START_TIMEOUT = 60.0
"""Seconds a child may take to import the App and say it is ready."""
CLOSE_GRACE = 1.0
"""Seconds an idle child gets to exit by itself at close (end of input) before SIGKILL."""
RESTART_BACKOFF = (1.0, 30.0)


class Child:
    """One child process and its pipes; it runs one job at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.tasks_run = 0
        self.rss_kib = 0

    @classmethod
    async def start(cls, command: list[str]) -> Child:
        """Start a child and wait until it has imported the App (ConfigurationError if it
        exits or stays silent instead)."""
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        child = cls(process)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await child.read()
        except (TimeoutError, asyncio.IncompleteReadError, DecodeError):
            child.kill()
            code = await process.wait()
            raise ConfigurationError(
                f"a pool process ({' '.join(command[-1:])}) did not start: exit status {code} "
                "(its error is in the log above)"
            ) from None
        except BaseException:
            child.kill()
            raise
        if ready[:1] != ["ready"]:
            child.kill()
            raise ConfigurationError(f"a pool process said {ready!r} instead of ready")
        log.info("pool process %d started", child.pid)
        return child

    async def read(self) -> Any:
        """The next message from the child (IncompleteReadError at its end)."""
        stdout = self.process.stdout
        assert stdout is not None
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        return codec.unpack(await stdout.readexactly(size))

    async def run(self, job: Job, hard_timeout: float | None, progress: Progress) -> oc.Outcome:
        """Run ``job``: its Outcome; TaskHardTimeout (the child is killed) past
        ``hard_timeout``; PoolProcessDied if the child dies meanwhile."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            async with asyncio.timeout(hard_timeout) as limit:
                stdin.write(job.to_frame())
                await stdin.drain()
                message = await self.read()
                while message[0] == "progress":
                    await progress(message[1], message[2])
                    message = await self.read()
        except TimeoutError:
            if not limit.expired():
                raise
            self.kill()
            await self.process.wait()
            raise TaskHardTimeout(
                f"task {job.task_name} ran longer than its hard timeout ({hard_timeout} s): "
                f"its process {self.pid} was killed"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, DecodeError):
            self.kill()
            raise PoolProcessDied(self.pid, await self.process.wait()) from None
        _, outcome, self.rss_kib = message
        self.tasks_run += 1
        return decode_outcome(outcome)

    def kill(self) -> None:
        """SIGKILL the child (nothing if it is gone already)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    async def close(self) -> None:
        """Let the child exit at end of input; SIGKILL it after CLOSE_GRACE seconds."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), CLOSE_GRACE)
        except TimeoutError:
            self.kill()
            await self.process.wait()


class ProcessPool:
    """``size`` child processes that run plain ``def`` tasks of the App at ``app_spec``.

    A child past ``max_tasks`` tasks or ``max_memory_kib`` of resident memory is replaced
    after the task it ran; one that died, or was killed for its hard timeout, is replaced at
    once (unless ``stopping()``). ``initializer``, a module-level function, runs in each
    child once it has imported the App, with the App (process-init hooks run there).
    """

    def __init__(
        self,
        app_spec: str,
        size: int,
        *,
        max_tasks: int | None = None,
        max_memory_kib: int | None = None,
        initializer: Callable[[App], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        if size < 1:
            raise ConfigurationError("a process pool needs at least one process")
        self.command = [sys.executable, "-m", "taskq.pool.child", app_spec]
        if initializer is not None:
            self.command += ["--init", function_spec(initializer)]
        self.size = size
        self.max_tasks = max_tasks
        self.max_memory_kib = max_memory_kib
        self.stopping = stopping
        self.children: dict[int, Child] = {}
        self._idle: asyncio.Queue[Child] = asyncio.Queue()
        self._chores: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The process IDs of the children alive now."""
        return list(self.children)

    async def start(self) -> None:
        """Start every child (at once); ConfigurationError if one cannot import the App."""
        results = await asyncio.gather(
            *(Child.start(self.command) for _ in range(self.size)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Child):
                self._add(result)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    async def run(self, job: Job, hard_timeout: float | None, progress: Progress) -> oc.Outcome:
        """Run ``job`` in the next free child (waiting for one). Raises what Child.run raises;
        a child that did not finish cleanly (killed, dead, or the run cancelled) is replaced."""
        child = await self._idle.get()
        try:
            outcome = await child.run(job, hard_timeout, progress)
        except BaseException:
            child.kill()
            self._replace(child, None)
            raise
        reason = self._worn(child)
        if reason is None:
            self._idle.put_nowait(child)
        else:
            log.info("pool process %d is replaced: %s", child.pid, reason)
            self._replace(child, child.close())
        return outcome

    def _worn(self, child: Child) -> str | None:
        if self.max_tasks is not None and child.tasks_run >= self.max_tasks:
            return f"it ran {child.tasks_run} tasks (max_tasks_per_child)"
        if self.max_memory_kib is not None and child.rss_kib > self.max_memory_kib:
            return f"it uses {child.rss_kib // 1024} MiB (max_memory_per_child)"
        return None

    def _add(self, child: Child) -> None:
        self.children[child.pid] = child
        self._idle.put_nowait(child)

    def _replace(self, child: Child, ending: Awaitable[None] | None) -> None:
        self.children.pop(child.pid, None)
        if self._closed or self.stopping():
            if ending is not None:
                self._chore(ending)
            return
        self._chore(self._start_replacement(ending))

    def _chore(self, work: Awaitable[None]) -> None:
        chore = asyncio.ensure_future(work)
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    async def _start_replacement(self, ending: Awaitable[None] | None) -> None:
        if ending is not None:
            await ending
        delay = RESTART_BACKOFF[0]
        while not self._closed:
            try:
                child = await Child.start(self.command)
            except ConfigurationError as exc:
                log.error("%s; trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF[1])
                continue
            if self._closed:
                await child.close()
            else:
                self._add(child)
            return

    async def close(self) -> None:
        """End every child: idle ones at end of input, then SIGKILL (CLOSE_GRACE seconds);
        runs still going are not waited for (the worker has given their deliveries back)."""
        self._closed = True
        for chore in list(self._chores):
            chore.cancel()
        await asyncio.gather(*self._chores, return_exceptions=True)
        children = list(self.children.values())
        self.children.clear()
        await asyncio.gather(*(child.close() for child in children), return_exceptions=True)


def function_spec(func: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function (a child imports it by that name);
    ConfigurationError for anything a fresh interpreter cannot import."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ConfigurationError(
            f"{func!r} must be a function at module level of an importable module: pool "
            "processes import it by name"
        )
    return f"{module}:{qualname}"


def app_spec_of(app: App) -> str:
    """``module:attr`` where a pool child finds ``app``: a module of one of its tasks that
    holds it (ConfigurationError if none does: pass the spec to the Worker)."""
    modules = {getattr(task.func, "__module__", None) for task in app.tasks.values()}
    for name in sorted(m for m in modules if m and m != "__main__"):
        module = sys.modules.get(name)
        if module is None:
            continue
        for attr, value in vars(module).items():
            if value is app:
                return f"{name}:{attr}"
    raise ConfigurationError(
        f"App {app.name!r} is not a module-level name of its tasks' modules: the process pool "
        "imports it by name; pass Worker(app_spec='module:attr')"
    )


__all__ = ["ProcessPool", "app_spec_of", "function_spec"]
