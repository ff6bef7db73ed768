"""``taskq doctor``: what is wrong with the broker, the cluster and the App's queues.

- :mod:`~taskq.doctor.fetch` asks the management HTTP API, passive declares over AMQP and
  ``rabbitmqctl`` (the only I/O) and fills a :class:`~taskq.doctor.snapshot.Snapshot`;
- :mod:`~taskq.doctor.expected` says what the App declares (taskq.topology's arguments);
- :mod:`~taskq.doctor.broker_checks` and :mod:`~taskq.doctor.queue_checks` are pure
  functions from those to :class:`~taskq.doctor.findings.Finding` values;
- :func:`~taskq.doctor.findings.exit_code` turns the findings into 0, 1 or 2.

See docs/operations/doctor.md for every check.
"""

from __future__ import annotations

from .diagnose import diagnose
from .expected import Expected, expected_of
from .fetch import Options, gather
from .findings import Finding, Status, exit_code
from .snapshot import Snapshot

__all__ = [
    "Expected",
    "Finding",
    "Options",
    "Snapshot",
    "Status",
    "diagnose",
    "exit_code",
    "expected_of",
    "gather",
]
