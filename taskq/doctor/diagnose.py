"""Run every check over one Snapshot, in the report's order. Pure."""

from __future__ import annotations

from .broker_checks import (
    check_alarms,
    check_cluster,
    check_connections,
    check_feature_flags,
    check_leaders,
    check_version,
)
from .expected import Expected
from .findings import Finding
from .queue_checks import (
    check_arguments,
    check_consumer_timeout,
    check_dead_letters,
    check_old_delay_levels,
    check_unconsumed,
    check_unheld_delays,
)
from .snapshot import Snapshot


def diagnose(snap: Snapshot, expected: Expected) -> list[Finding]:
    """Every finding of every check that the fetched data allows (a check whose source did
    not answer says nothing; ``management-api`` lists those it skipped)."""
    if not snap.reachable:
        return check_connections(snap)
    return [
        *check_connections(snap),
        *check_version(snap),
        *check_feature_flags(snap.feature_flags),
        *check_cluster(snap.nodes),
        *check_alarms(snap.nodes),
        *check_leaders(snap.queues, snap.nodes, expected),
        *check_arguments(snap, expected),
        *check_consumer_timeout(snap, expected),
        *check_unconsumed(snap, expected),
        *check_dead_letters(snap, expected),
        *check_old_delay_levels(snap, expected),
        *check_unheld_delays(snap, expected),
    ]
