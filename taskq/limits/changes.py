"""Changing a task's limits at runtime: ``taskq control rate-limit TASK 50/s``.

A change is a message on the limits stream, ``{prefix}.limits`` (a stream queue, like the
revocations of taskq.cancel, read through the same :class:`taskq.streams.CatchUp`): every
worker reads it from its first message when it starts, so a change survives every worker
restarting, and goes on reading it, so a change reaches a running worker within
milliseconds. Changes apply in the order they were published; for each task and each kind of
limit the last one wins. ``"default"`` goes back to what the code declares, ``"off"`` lifts
the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError, DecodeError
from ..message import OutgoingMessage
from ..streams import CatchUp, json_body, json_message
from ..topology import Names
from ..transport import Delivery, Transport
from .concurrency import ConcurrencyLimit
from .rate import RateLimit

if TYPE_CHECKING:
    from ..app import App
    from .gate import Gate, Limits

log = logging.getLogger("taskq.limits")

CHANGE_TYPE = "taskq.limit-change"
MARKER_TYPE = "taskq.limit-change.marker"
SEGMENT_BYTES = 1_000_000
"""Segment size of the limits stream (a stream drops whole segments only)."""
MAX_BYTES = 50_000_000
"""What the limits stream keeps at most. It has no ``x-max-age``: a change holds until
another replaces it. Each change, and each worker's start (its catch-up marker), adds about
150 bytes, so a change is dropped only after some 300,000 worker starts; ``taskq control
limits`` shows what is in force, and issuing a change again renews it."""
STREAM_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "stream",
    "x-stream-max-segment-size-bytes": SEGMENT_BYTES,
    "x-max-length-bytes": MAX_BYTES,
}
KEEP = ("default", "off")


@dataclasses.dataclass(frozen=True, slots=True)
class LimitChange:
    """A change of one task's limits. ``rate``: ``"50/s"``, ``"off"``, ``"default"``;
    ``concurrency``: a count >= 1, ``"off"``, ``"default"``; None: not changed by this."""

    task: str
    rate: str | None = None
    concurrency: int | str | None = None
    at: float = 0.0

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate not in KEEP:
            RateLimit.parse(self.rate)  # ConfigurationError if malformed
        count = self.concurrency
        malformed = isinstance(count, bool) or not isinstance(count, int) or count < 1
        if count is not None and count not in KEEP and malformed:
            raise ConfigurationError(
                f"concurrency limit must be a count >= 1, 'off' or 'default', not {count!r}"
            )

    def then(self, later: LimitChange) -> LimitChange:
        """This change followed by ``later`` (what ``later`` leaves alone stays)."""
        return LimitChange(
            self.task,
            later.rate if later.rate is not None else self.rate,
            later.concurrency if later.concurrency is not None else self.concurrency,
            later.at,
        )

    def applied_to(self, declared: Limits) -> Limits:
        """The limits in force: ``declared`` with this change made."""
        rate = declared.rate
        if self.rate == "off":
            rate = None
        elif self.rate is not None and self.rate != "default":
            rate = RateLimit.parse(self.rate)
        concurrency = declared.concurrency
        if self.concurrency == "off":
            concurrency = None
        elif isinstance(self.concurrency, int):
            base = concurrency or ConcurrencyLimit(self.concurrency)
            concurrency = dataclasses.replace(base, limit=self.concurrency)
        return dataclasses.replace(declared, rate=rate, concurrency=concurrency)

    def as_json(self) -> dict[str, Any]:
        """As JSON-ready data (the stream's body, the dashboard API's answer)."""
        return {"task": self.task, "rate": self.rate, "concurrency": self.concurrency,
                "at": self.at or time.time()}  # fmt: skip

    def to_message(self, message_id: str | None = None) -> OutgoingMessage:
        """The message published to the limits stream."""
        return json_message(CHANGE_TYPE, self.as_json(), message_id)

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> LimitChange:
        """The change a stream delivery carries; DecodeError if it is not one."""
        data = json_body(delivery, CHANGE_TYPE, "limit change")
        try:
            return cls(str(data["task"]), data.get("rate"), data.get("concurrency"),
                       float(data.get("at") or 0.0))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, ConfigurationError) as exc:
            raise DecodeError(f"malformed limit change: {exc}") from exc


async def change_limits(
    app: App, task: str, *, rate: str | None = None, concurrency: int | str | None = None
) -> LimitChange:
    """Change the limits of ``task`` on every worker of ``app``'s broker and prefix (the App
    must be open): ``rate`` ``"50/s"``, ``concurrency`` a count, either ``"off"`` or
    ``"default"`` (the code's); None leaves that limit as it is. ConfigurationError if one is
    malformed, BrokerError if the broker does not take the change."""
    change = LimitChange(task, rate, concurrency)
    await publish_change(app.transport, app.names, change)
    return change


async def publish_change(
    transport: Transport, names: Names, change: LimitChange, message_id: str | None = None
) -> None:
    """Make ``change`` for every worker, now and after restarts (BrokerError if the broker
    does not take it)."""
    queue = names.limit_changes
    await transport.declare_queue(queue, STREAM_ARGUMENTS)
    await transport.publish("", queue, change.to_message(message_id))


async def changes_made(
    transport: Transport, names: Names, timeout: float
) -> dict[str, LimitChange]:
    """Every task's limits as changed at runtime so far (the changes of each task merged; a
    task never changed is not in it). Each call reads the stream from its start and adds a
    catch-up marker to it: for a one-off look (``taskq control limits``); a process that
    looks again and again follows the stream with :class:`FollowedChanges`."""
    followed = FollowedChanges(transport, names, timeout)
    try:
        return await followed.current()
    finally:
        await followed.stop()


class FollowedChanges:
    """Every task's limits as changed at runtime, kept current by one reader of the limits
    stream for as long as it runs (the dashboard's): it reads the stream from its start once,
    on first use, and adds one catch-up marker then, however often it is asked afterwards
    (a marker per look would let a poller push the oldest changes out of the capped stream).
    """

    def __init__(self, transport: Transport, names: Names, timeout: float) -> None:
        self.transport = transport
        self.names = names
        self.timeout = timeout
        self._made: dict[str, LimitChange] = {}
        self._reader: CatchUp | None = None
        self._starting = asyncio.Lock()
        self._awaited: dict[str, asyncio.Event] = {}
        """Changes this process published, by message ID, until the reader meets them."""

    async def current(self) -> dict[str, LimitChange]:
        """The changes made so far (the changes of each task merged; a task never changed is
        not in it). BrokerError or TimeoutError if the stream cannot be read (tried again on
        the next call)."""
        await self._follow()
        return dict(self._made)

    async def make(self, change: LimitChange) -> None:
        """Publish ``change`` (see :func:`publish_change`) and return once this reader has
        read it too, so that the next :meth:`current` shows it."""
        await self._follow()
        message_id = uuid.uuid4().hex
        seen = self._awaited[message_id] = asyncio.Event()
        try:
            await publish_change(self.transport, self.names, change, message_id)
            await asyncio.wait_for(seen.wait(), self.timeout)
        finally:
            del self._awaited[message_id]

    async def stop(self) -> None:
        """Stop reading the stream."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    async def _follow(self) -> None:
        async with self._starting:
            if self._reader is not None:
                return
            reader = CatchUp(self.names.limit_changes, STREAM_ARGUMENTS, MARKER_TYPE,
                             self._on_message)  # fmt: skip
            try:
                await reader.start(self.transport, self.timeout)
            except BaseException:
                await reader.stop()
                raise
            self._reader = reader

    def _on_message(self, delivery: Delivery) -> None:
        with contextlib.suppress(DecodeError):
            change = LimitChange.from_delivery(delivery)
            self._made[change.task] = self._made.get(change.task, LimitChange(change.task)).then(
                change
            )
        seen = self._awaited.get(delivery.message_id or "")
        if seen is not None:
            seen.set()


async def follow_changes(transport: Transport, names: Names, gate: Gate, timeout: float) -> None:
    """Apply every change made so far to ``gate``, then the later ones as they come."""

    def on_message(delivery: Delivery) -> None:
        try:
            change = LimitChange.from_delivery(delivery)
        except DecodeError as exc:
            log.warning("ignoring a message on the limits stream: %s", exc)
            return
        gate.change(change)
        if change.at > started:
            log.info("limits of task %s changed: %s", change.task, gate.limited.get(change.task))

    started = time.time()
    reader = CatchUp(names.limit_changes, STREAM_ARGUMENTS, MARKER_TYPE, on_message)
    await reader.start(transport, timeout)
