"""The worker's side of workflows: what a step's outcome sends, before its message is acked.

A step that succeeded sends what follows it (the chain's next step, its links) or adds its
result to its join; the member that completes a join sends the join's callback. A step that
failed for good records the failure on the workflow's final tasks (so its handle raises at
once) and sends the error links. Everything is sent before the ack: a worker killed in
between leaves the step to be redelivered, and it is sent again with the same task IDs
(a redelivered step that succeeded already is skipped, and its successors sent again).

Exactly once: every step a worker sends carries a claim token of its own; the first
delivery of a task ID to claim it in the store runs, another publish of that ID is acked
without running (see Continuation.may_run). A join is idempotent per member index.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import codec
from ..exceptions import ConfigurationError
from ..message import Envelope
from ..results.base import ErrorInfo, ResultStore, TaskState, TaskStatus
from ..settings import Settings
from .store import join_store_of
from .wire import Meta, Node, envelope_of_node, expand, successors

if TYPE_CHECKING:
    from ..recorder import Recorder
    from ..sending import Sender

log = logging.getLogger("taskq.workflow")


class Continuation:
    """Sends what follows a workflow step, for one worker."""

    def __init__(
        self, *, sender: Sender, store: ResultStore, settings: Settings, recorder: Recorder
    ) -> None:
        self.sender = sender
        self.store = store
        self.settings = settings
        self.recorder = recorder
        # Looked up once: a runtime Protocol check costs as much as the rest of a member's join.
        self.joins = join_store_of(store)

    async def may_run(self, envelope: Envelope) -> bool:
        """Whether this delivery may run its task: not if another publish of its task ID
        claimed it (a step sent again after a redelivery of the step before it)."""
        token = (envelope.workflow or {}).get("c")
        joins = self.joins
        if token is None or joins is None:
            return True
        return await self.recorder.until_stored(lambda: joins.claim(envelope.task_id, token))

    async def succeeded(self, envelope: Envelope, value: Any) -> None:
        """Send what follows a step that returned ``value``."""
        if not envelope.workflow:
            return
        out: list[tuple[Node, list[Any], dict[str, Any]]] = []
        await self._follow(envelope.workflow, value, out)
        await self._publish(out, envelope)

    async def skipped(self, envelope: Envelope) -> None:
        """A step that succeeded before (a redelivery): send what follows it again."""
        if not envelope.workflow:
            return
        state = await self.recorder.until_stored(lambda: self.store.get(envelope.task_id))
        if state is not None and state.status is TaskStatus.SUCCESS:
            await self.succeeded(envelope, state.result)

    async def failed(self, envelope: Envelope, error: ErrorInfo) -> None:
        """A step failed for good: fail the final tasks that waited for it, send the error
        links (a partial one gets the failed task's ID)."""
        meta = envelope.workflow
        if not meta:
            return
        why = ErrorInfo(error.type, f"{_step(envelope)} failed: {error.message}", error.traceback)
        await self._end_finals(envelope, TaskStatus.FAILURE, why)
        out = []
        for node in meta.get("e", ()):
            out.extend(expand(node, envelope.task_id, {}, has_value=True))
        await self._publish(out, envelope)

    async def cancelled(self, envelope: Envelope, error: ErrorInfo) -> None:
        """A step was cancelled (never run, or stopped): the final tasks that waited for it are
        recorded CANCELLED, naming it, so that the workflow's handle raises TaskCancelled at
        once instead of waiting for a step that will never be sent. Nothing follows a
        cancelled step: no links, no error links (a cancel is not a failure)."""
        if envelope.workflow:
            why = ErrorInfo(error.type, f"{_step(envelope)} was cancelled: {error.message}")
            await self._end_finals(envelope, TaskStatus.CANCELLED, why)

    async def _end_finals(self, envelope: Envelope, status: TaskStatus, why: ErrorInfo) -> None:
        """Record ``status`` on the workflow's final tasks that waited for ``envelope``'s step
        (a final task that reached a terminal state first keeps it)."""
        for final in (envelope.workflow or {}).get("f", ()):
            state = TaskState(final, status, error=why, attempt=envelope.attempt)
            await self._record(state, envelope.reply_to)

    async def _record(self, state: TaskState, reply_to: str | None) -> None:
        store = self.store
        await self.recorder.until_stored(lambda: store.record(state, reply_to=reply_to))

    async def _follow(
        self, meta: Meta, value: Any, out: list[tuple[Node, list[Any], dict[str, Any]]]
    ) -> None:
        follow, join = successors(meta)
        for node, inherited in follow:
            out.extend(expand(node, value, inherited, has_value=True))
        if join is not None:
            values = await self._join(join, value)
            if values is not None:
                await self._follow(join["c"], values, out)

    async def _join(self, join: Meta, value: Any) -> list[Any] | None:
        joins = self.joins
        if joins is None:
            raise ConfigurationError(
                f"a workflow step joins {join['id']}, but this worker's result store "
                f"{type(self.store).__name__} cannot hold joins: use Redis or PostgreSQL"
            )
        packed = codec.pack(value)
        values = await self.recorder.until_stored(
            lambda: joins.join(join["id"], join["i"], join["n"], packed)
        )
        return None if values is None else unpack_all(values)

    async def _publish(
        self, out: list[tuple[Node, list[Any], dict[str, Any]]], after: Envelope
    ) -> None:
        if out:
            settings = self.settings
            await self.sender.publish_envelopes(
                [envelope_of_node(settings, n, a, m, claimed=True, after=after) for n, a, m in out]
            )


def _step(envelope: Envelope) -> str:
    """How an error names a workflow step: ``workflow step NAME[ID]``."""
    return f"workflow step {envelope.task_name}[{envelope.task_id}]"


def unpack_all(values: list[bytes]) -> list[Any]:
    """The members' values (each one packed value), unpacked as one msgpack array: a tenth of
    the cost of unpacking them one by one, for a chord of 10,000."""
    size = len(values)
    if size < 16:
        header = bytes([0x90 | size])
    elif size < 1 << 16:
        header = b"\xdc" + size.to_bytes(2, "big")
    else:
        header = b"\xdd" + size.to_bytes(4, "big")
    unpacked: list[Any] = codec.unpack(header + b"".join(values))
    return unpacked
