"""The Redis store's script calls made in one event-loop turn, sent as one pipeline.

A fan-out of thousands of tasks makes thousands of script calls (PENDING at send, STARTED and
the outcome at the worker, registrations of waiters) at about the same moment. One by one,
each would take a round trip; gathered per loop turn into one pipeline on the store's own
connection (:mod:`taskq.results.redis_wire`; not a transaction: each script is atomic on its
own), they cost one round trip per turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .background import Background

try:
    from redis.exceptions import NoScriptError
except ImportError:  # the store refuses to start without redis; nothing runs here then
    NoScriptError = Exception  # type: ignore[misc,assignment]

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from .redis_wire import Command, RedisWire

LIMIT = 500
"""Calls per pipeline at most (a larger turn is split)."""

Call = tuple["AsyncScript", Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptPipeline:
    """Runs script calls in one pipeline per event-loop turn; each caller gets its own result
    or exception (a connection error fails every call of its pipeline).

    On a live connection a turn's calls are written at its end and each reply wakes its
    caller directly (two event-loop turns from call to result); only while the connection is
    down does a task connect and send them.
    """

    def __init__(self, wire: RedisWire) -> None:
        self._wire = wire
        self._calls: list[Call] = []
        self._inflight: dict[int, list[Call]] = {}
        self._running = Background()
        self._closed = False

    async def __call__(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The result of ``script(keys, args)``, run with the other calls of this loop turn.
        ConnectionError once the pipeline is closed."""
        if self._closed:
            raise ConnectionError("the result store was closed")
        loop = asyncio.get_running_loop()
        if not self._calls:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._calls.append((script, keys, args, future))
        result = await future
        if isinstance(result, NoScriptError):  # a restarted Redis forgot it: load, run again
            await self._wire.execute([["SCRIPT", "LOAD", _text(script.script)]])
            (result,) = await self._wire.execute([_evalsha(script, keys, args)])
        if isinstance(result, BaseException):
            raise result
        return result

    def _flush(self) -> None:
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), LIMIT):
            chunk = calls[start : start + LIMIT]
            commands = [_evalsha(script, keys, args) for script, keys, args, _ in chunk]
            if self._wire.send(commands, [future for *_, future in chunk]):
                continue
            self._inflight[id(chunk)] = chunk  # from now: close() must answer them
            self._running.spawn(self._connect_and_run(chunk, commands))

    async def _connect_and_run(self, calls: list[Call], commands: list[Command]) -> None:
        try:
            results = await self._wire.execute(commands)
        except BaseException as exc:
            for *_, future in calls:
                _settle(future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._inflight.pop(id(calls), None)
        for (*_, future), result in zip(calls, results, strict=True):
            if not future.done():
                future.set_result(result)  # an error reply too: the caller tells them apart

    async def close(self) -> None:
        """Fail every call not answered yet, and cancel the pipelines still connecting (a
        task cancelled before it started would leave its callers waiting). Calls written to
        the connection fail when the wire closes."""
        self._closed = True
        closed = ConnectionError("the result store was closed")
        for calls in [self._calls, *self._inflight.values()]:
            for *_, future in calls:
                _settle(future, closed)
        self._calls = []
        await self._running.cancel()


def _evalsha(script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Command:
    return ["EVALSHA", script.sha, len(keys), *keys, *args]


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give a caller its result, or its exception (an exception instance is one)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        future.exception()  # its caller may be gone: no "never retrieved" warning
    else:
        future.set_result(outcome)


def _text(script: str | bytes | memoryview) -> str | bytes:
    return script if isinstance(script, str | bytes) else bytes(script)
