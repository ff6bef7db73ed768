"""The default result store: states flow back over RabbitMQ to the sender's reply queue.

No extra server. Only the process that sent a task can learn its outcome. Each open App has a
reply queue of its own (``{prefix}.reply.{id}``): durable and not exclusive, so it outlives a
reconnect of the client or of the worker, and replies published meanwhile wait in it; the
broker deletes it once it has been unused for ``reply_queue_ttl`` seconds (a client that
died), and a client that closes deletes it at once. Terminal states are published persistent
and confirmed before the worker acks the task, so they also survive a broker restart.

If the queue expired while the client was away (longer than ``reply_queue_ttl``), replies
sent meanwhile are lost: the client notices when it reconnects, every caller still waiting
gets ResultUnavailable at once instead of waiting out its timeout, and the client goes on
with a reply queue of a new name.

A worker whose reply is returned as unroutable (the queue is gone: its sender closed or
expired) remembers the name and sends no more replies there, so a producer that never asks
for results costs a worker almost nothing once it has closed. Use a durable store (Redis)
for lookups by ID from other processes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from ..exceptions import DecodeError, PublishError, ResultTimeout, ResultUnavailable
from ..message import OutgoingMessage
from ..transport import Transport
from .base import TaskState, TaskStatus

log = logging.getLogger("taskq.results")

STATUS_TYPE = "taskq.status"
REMEMBER_GONE = 4096
"""How many reply queues found gone a worker remembers (and sends no more replies to): a
sender that closed, or was away longer than reply_queue_ttl. Such a name never comes back:
a client whose queue expired goes on with a new one."""


class AmqpResultStore:
    """Results over AMQP: workers publish states to ``reply_to``; the sender keeps them."""

    durable = False

    def __init__(self, transport: Transport, *, reply_queue_ttl: float = 300.0) -> None:
        self._transport = transport
        self._reply_queue_ttl = reply_queue_ttl
        self._queue = transport.names.reply_queue(uuid.uuid4().hex)
        self._states: dict[str, TaskState] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._lost: dict[str, str] = {}
        self._delivered: dict[str, asyncio.Future[None]] = {}
        self._gone: dict[str, None] = {}  # reply queues found gone, oldest first
        self._opened = False
        self._closed = False
        self._cancel: Callable[[], Awaitable[None]] | None = None

    async def open(self) -> None:
        self._cancel = await self._transport.consume_replies(
            self._queue,
            self._on_reply,
            expires=self._reply_queue_ttl,
            on_lost=self._on_queue_lost,
        )
        self._opened = True

    async def close(self) -> None:
        self._closed = True
        for event in self._done.values():
            event.set()  # wake waiters; they will find no terminal state and say so
        if self._opened:
            self._opened = False
            try:
                if self._cancel is not None:
                    await self._cancel()
                await self._transport.delete_queue(self._queue)
            except Exception as exc:  # the broker drops it after reply_queue_ttl anyway
                log.debug("could not delete reply queue %s: %r", self._queue, exc)

    def reply_to(self) -> str | None:
        return self._queue if self._opened else None

    def reaches(self, reply_to: str | None) -> bool:
        return reply_to is not None and reply_to not in self._gone

    def track(self, task_id: str, task_name: str) -> None:
        self._states.setdefault(task_id, TaskState(task_id, TaskStatus.PENDING, task_name, 0))

    def delivered(self, task_id: str) -> asyncio.Future[None]:
        """A future resolved when the first state of ``task_id`` comes back: a worker got
        its message, so its sender need not wait for the broker's confirm any longer (see
        ``Transport.publish``)."""
        future = self._delivered.get(task_id)
        if future is None:
            future = self._delivered[task_id] = asyncio.get_running_loop().create_future()
        return future

    def forget(self, task_id: str) -> None:
        self._delivered.pop(task_id, None)
        self._states.pop(task_id, None)
        self._done.pop(task_id, None)
        self._lost.pop(task_id, None)

    async def reset(self, task_id: str) -> None:
        if task_id in self._states:
            self._lost.pop(task_id, None)
            self._states[task_id] = TaskState(
                task_id, TaskStatus.PENDING, self._states[task_id].task_name, 0
            )

    def _on_queue_lost(self, replacement: str) -> None:
        pending = [
            task_id
            for task_id, state in self._states.items()
            if not state.status.terminal and task_id not in self._lost
        ]
        log.warning(
            "reply queue %s expired while this client was disconnected; the outcomes of %d "
            "task(s) may have been lost",
            self._queue, len(pending),
        )  # fmt: skip
        reason = (
            f"the reply queue {self._queue} expired while this client was disconnected "
            "(longer than reply_queue_ttl); the outcome may have been lost"
        )
        self._queue = replacement  # tasks sent from now on get their replies there
        for task_id in pending:
            self._lost[task_id] = reason
            if task_id in self._done:
                self._done[task_id].set()

    def _on_reply(self, correlation_id: str | None, body: bytes, kind: str | None) -> None:
        if kind != STATUS_TYPE or correlation_id is None:
            log.warning("ignoring a message on the reply queue that is not a task status")
            return
        try:
            state = TaskState.decode(body)
        except DecodeError as exc:
            log.warning("ignoring a malformed status for %s: %s", correlation_id, exc)
            return
        if state.task_id not in self._states:
            return  # a task this process no longer tracks (its handle was dropped)
        delivered = self._delivered.pop(state.task_id, None)
        if delivered is not None and not delivered.done():
            delivered.set_result(None)
        if state.supersedes(self._states.get(state.task_id)):
            self._states[state.task_id] = state
            if state.status.terminal and state.task_id in self._done:
                self._done[state.task_id].set()

    async def record(self, state: TaskState, *, reply_to: str | None) -> None:
        if not reply_to or reply_to in self._gone:
            return  # nobody listens for this task's outcome: cost nothing
        terminal = state.status.terminal
        message = OutgoingMessage(
            body=state.encode(),
            type=STATUS_TYPE,
            correlation_id=state.task_id,
            # What a return is matched by: a task has one terminal state, so its ID is as
            # unique as a fresh one, and costs no uuid4 and no copy of the message.
            message_id=state.task_id,
            persistent=terminal,
        )
        if not terminal:
            await self._transport.notify(reply_to, message)
            return
        # Confirmed before the task is acked. Mandatory, so that a reply queue that is gone
        # (its sender closed or died) is found out: its replies are then skipped for a while,
        # and a producer that never asks for results costs a worker almost nothing.
        try:
            await self._transport.publish("", reply_to, message)
        except PublishError as exc:
            if not exc.unroutable:
                raise
            self._gone[reply_to] = None
            if len(self._gone) > REMEMBER_GONE:
                del self._gone[next(iter(self._gone))]

    async def get(self, task_id: str) -> TaskState:
        """The state of a task this process sent; ResultUnavailable for any other (its
        states go to its sender's reply queue: "not known here" would read as PENDING,
        forever)."""
        return self._known(task_id)

    def _known(self, task_id: str) -> TaskState:
        state = self._states.get(task_id)
        if state is None:
            raise ResultUnavailable(
                f"task {task_id} was not sent by this process (or its handle is gone): the "
                "AMQP result store only answers the process that sent a task. To look tasks "
                "up by ID from any process, use a durable store (results='redis://...' or "
                "'postgresql://...')"
            )
        return state

    async def wait(self, task_id: str, timeout: float | None) -> TaskState:
        state = self._known(task_id)
        if not state.status.terminal and task_id not in self._lost and not self._closed:
            event = self._done.setdefault(task_id, asyncio.Event())
            try:
                async with asyncio.timeout(timeout):
                    await event.wait()
            except TimeoutError:
                raise ResultTimeout(
                    f"task {task_id} gave no outcome within {timeout} s "
                    f"(last status {self._states[task_id].status.value})"
                ) from None
            state = self._states.get(task_id, state)
        if state.status.terminal:
            return state
        if task_id in self._lost:
            raise ResultUnavailable(f"task {task_id}: {self._lost[task_id]}")
        raise ResultUnavailable(f"the app closed before task {task_id} finished")
