"""A revocation (one cancel, as a message) and the set of those in force. Pure.

A revocation says: task ``task_id`` must not run, or must stop, with ``reason``. It is kept
until ``until`` (the cancel's time plus the ``revocation_expiry`` setting); after that a
worker treats the task as never cancelled (its message must have left the queues by then).
"""

from __future__ import annotations

import dataclasses
import time

from ..exceptions import DecodeError
from ..message import OutgoingMessage
from ..streams import json_body, json_message
from ..transport import Delivery

CANCELLED_TYPE = "taskq.TaskCancelled"
"""The error type of a CANCELLED state; its message is the cancel's reason."""

REVOCATION_TYPE = "taskq.revocation"
ACK_TYPE = "taskq.revocation.ack"
"""A worker's answer to a revocation it read live: sent to the revocation's ``reply_to``."""
MARKER_TYPE = "taskq.revocation.marker"
"""A worker's own message on the stream: once it reads it back, it has read every
revocation published before it started."""


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    """One cancel: the task, why, when, and until when it is in force (Unix times);
    ``reply_to``: where the workers that read it live acknowledge it (the canceller's reply
    queue; None: nobody waits)."""

    task_id: str
    reason: str
    at: float
    until: float
    reply_to: str | None = None

    @classmethod
    def new(
        cls, task_id: str, reason: str, expiry: float, reply_to: str | None = None
    ) -> Revocation:
        """A revocation made now, in force for ``expiry`` seconds."""
        now = time.time()
        return cls(task_id, reason, now, now + expiry, reply_to)

    def in_force(self, now: float | None = None) -> bool:
        """Whether it has not expired."""
        return (time.time() if now is None else now) < self.until

    def to_dict(self) -> dict[str, object]:
        """As JSON-ready data (the stream's body, and a control request's arguments)."""
        data: dict[str, object] = {"task_id": self.task_id, "reason": self.reason,
                                   "at": self.at, "until": self.until}  # fmt: skip
        if self.reply_to is not None:
            data["reply_to"] = self.reply_to
        return data

    @classmethod
    def from_dict(cls, data: object) -> Revocation:
        """The inverse of :meth:`to_dict`; DecodeError on anything else."""
        if not isinstance(data, dict):
            raise DecodeError(f"malformed revocation: {data!r}")
        reply_to = data.get("reply_to")
        try:
            return cls(str(data["task_id"]), str(data["reason"]), float(data["at"]),
                       float(data["until"]), str(reply_to) if reply_to else None)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"malformed revocation: {data!r}") from exc

    def to_message(self) -> OutgoingMessage:
        """The persistent message published to the revocations stream."""
        return json_message(REVOCATION_TYPE, self.to_dict(), self.task_id)

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> Revocation:
        """The revocation a stream delivery carries; DecodeError if it is not one."""
        return cls.from_dict(json_body(delivery, REVOCATION_TYPE, "revocation"))


class Revoked:
    """The revocations in force, by task ID (expired ones are dropped as they are met)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Revocation] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, revocation: Revocation) -> bool:
        """Keep ``revocation`` if it is in force; whether it is new here."""
        if not revocation.in_force():
            return False
        known = revocation.task_id in self._by_id
        self._by_id[revocation.task_id] = revocation
        return not known

    def get(self, task_id: str) -> Revocation | None:
        """The revocation of ``task_id`` in force, or None."""
        found = self._by_id.get(task_id)
        if found is not None and not found.in_force():
            del self._by_id[task_id]
            return None
        return found

    def prune(self) -> int:
        """Drop every expired revocation; how many were dropped."""
        now = time.time()
        expired = [k for k, v in self._by_id.items() if not v.in_force(now)]
        for task_id in expired:
            del self._by_id[task_id]
        return len(expired)
