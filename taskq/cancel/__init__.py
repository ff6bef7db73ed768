"""Cancelling tasks wherever they are: queued, delayed, or running (docs/guide/cancellation.md).

- :mod:`.revocation`: a cancel as a message, and the set of those in force (pure);
- :mod:`.client`: ``cancel_task``, what every way to cancel calls (also the dashboard's);
- :mod:`.revoker`: the worker's side (reads the revocations stream, stops what runs);
- :mod:`.scope`: one run that a cancel can stop.

The revocations are held by the broker alone, in a stream queue (``{prefix}.revocations``,
``x-queue-type: stream``) that every worker reads from its first message when it starts: they
survive every worker restarting, with any result store, and expire after the
``revocation_expiry`` setting.
"""

from .client import CancelResult, cancel_task
from .revocation import Revocation
from .revoker import Revoker
from .scope import RunScope

__all__ = ["CancelResult", "Revocation", "Revoker", "RunScope", "cancel_task"]
