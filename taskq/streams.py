"""Reading a stream queue from its first message, and knowing when every message published
before now has been read (the revocations of taskq.cancel, the limit changes of
taskq.limits.changes).

The reader publishes a *marker* of its own (a message of ``marker_type`` with a fresh ID) once
it reads the stream, and waits until it reads that marker back: a stream keeps the order of
its messages, so by then it has read all those published before. It goes on reading, so a
message published later reaches it within milliseconds; after a reconnect the transport
reads the stream again from the start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .exceptions import BrokerUnavailable, DecodeError
from .message import OutgoingMessage
from .transport import Delivery, Transport

log = logging.getLogger("taskq.streams")

PREFETCH = 500
"""Unacked stream deliveries at once (a stream consumer must be given credit by acks)."""

STREAM_RETRY = 0.5
"""Seconds between tries to read a stream while the broker cannot serve it."""


def json_message(kind: str, data: object, message_id: str | None = None) -> OutgoingMessage:
    """A message of type ``kind`` with ``data`` as its JSON body, for a stream."""
    return OutgoingMessage(body=json.dumps(data).encode(), message_id=message_id, type=kind,
                           content_type="application/json")  # fmt: skip


def json_body(delivery: Delivery, kind: str, what: str) -> Any:
    """The JSON body of a stream delivery of type ``kind``; DecodeError if it is not one
    (``what`` names it in the error)."""
    if delivery.type != kind:
        raise DecodeError(f"not a {what}: type {delivery.type!r}")
    try:
        return json.loads(delivery.body)
    except ValueError as exc:
        raise DecodeError(f"malformed {what}: {exc}") from exc


class CatchUp:
    """Reads one stream for good, handing each message but the markers to ``on_message``
    (which must not block); every delivery is acked."""

    def __init__(
        self,
        queue: str,
        arguments: dict[str, Any],
        marker_type: str,
        on_message: Callable[[Delivery], None],
    ) -> None:
        self.queue = queue
        self.arguments = arguments
        self.marker_type = marker_type
        self.on_message = on_message
        self._marker: str | None = None
        self._caught_up = asyncio.Event()
        self._acks: set[asyncio.Future[None]] = set()
        self._cancel: Callable[[], Awaitable[None]] | None = None

    async def start(self, transport: Transport, timeout: float) -> None:
        """Read the stream; return once every message published so far was handed on.
        BrokerError if the stream cannot be declared (TopologyMismatch: it exists with other
        arguments); TimeoutError if the marker does not come back within ``timeout`` s."""
        self._marker = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                self._cancel = await transport.read_stream(
                    self.queue, self._on_delivery, arguments=self.arguments, prefetch=PREFETCH
                )
                break
            except BrokerUnavailable as exc:  # e.g. the stream's replica here is starting
                if asyncio.get_running_loop().time() + STREAM_RETRY > deadline:
                    raise
                log.info("%s; trying again in %.1f s", exc, STREAM_RETRY)
                await asyncio.sleep(STREAM_RETRY)
        marker = json_message(self.marker_type, {}, self._marker)
        await transport.publish("", self.queue, marker)
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    @property
    def caught_up(self) -> bool:
        """Whether every message published before :meth:`start` was read: a message handed
        on now was published after it (read live)."""
        return self._caught_up.is_set()

    async def stop(self) -> None:
        """Stop reading (a reader that needed only what was there when it started)."""
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            await cancel()

    def _on_delivery(self, delivery: Delivery) -> None:
        try:
            if delivery.type == self.marker_type:
                if delivery.message_id == self._marker:
                    self._caught_up.set()
            else:
                self.on_message(delivery)
        finally:
            ack = asyncio.ensure_future(delivery.ack())
            self._acks.add(ack)
            ack.add_done_callback(self._acks.discard)
