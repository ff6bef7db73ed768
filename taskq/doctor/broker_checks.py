"""Checks of the broker itself: connections, version and feature flags, cluster members and
partitions, alarms, and where quorum queue leaders live. Pure functions of a Snapshot."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from .expected import Expected
from .findings import Finding, fail, ok, warn
from .snapshot import Row, Snapshot

RECOMMENDED_VERSION = (3, 12)
ENABLE_API = (
    "enable it with `rabbitmq-plugins enable rabbitmq_management` on a node, or point "
    "--management-url at it"
)
API_CHECKS = ("feature-flags", "cluster", "alarms", "quorum-leaders")


def check_connections(snap: Snapshot) -> list[Finding]:
    """``amqp``: fail if the broker refused or did not answer. ``management-api``: warn if it
    did not answer (the checks that need it are then listed as skipped)."""
    if snap.amqp_up:
        found = [ok("amqp", f"connected to {snap.broker}")]
    else:
        found = [fail("amqp", f"cannot connect to {snap.broker}: {snap.amqp_error}")]
    if snap.api_up:
        found.append(ok("management-api", f"answered at {snap.api_base}"))
    else:
        found.append(
            warn(
                "management-api",
                f"not reachable ({snap.api_error}): {', '.join(API_CHECKS)} not checked, queue "
                f"checks by AMQP only; {ENABLE_API}",
                skipped=list(API_CHECKS),
                error=snap.api_error,
            )
        )
    return found


def parse_version(text: str) -> tuple[int, ...]:
    """``"3.10.8"`` -> ``(3, 10, 8)``; the leading numbers of each part (``"4.0.0-rc.1"``)."""
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):  # "0-rc": what follows is a pre-release tag
            break
    return tuple(parts)


def broker_version(snap: Snapshot) -> str | None:
    """The RabbitMQ version, from the management API or else the AMQP handshake."""
    for source in (snap.overview, snap.server):
        if source:
            value = source.get("rabbitmq_version") or source.get("version")
            if value:
                return value.decode() if isinstance(value, bytes) else str(value)
    return None


def check_version(snap: Snapshot) -> list[Finding]:
    """``version``: warn below 3.12 (and say why)."""
    version = broker_version(snap)
    if version is None:
        return []
    erlang = (snap.overview or {}).get("erlang_version")
    data = {"rabbitmq": version, "erlang": erlang}
    if parse_version(version) >= RECOMMENDED_VERSION:
        return [ok("version", f"RabbitMQ {version}", **data)]
    return [
        warn(
            "version",
            f"RabbitMQ {version} is older than 3.12: 3.11 and older get no community patches, "
            "have no per-queue consumer timeout (x-consumer-timeout, a consumer-timeout policy: "
            "3.12) for queues of long tasks, and an "
            "upgrade to 4.x passes through 3.13 with every stable feature flag enabled",
            **data,
        )
    ]


def check_feature_flags(flags: Sequence[Row] | None) -> list[Finding]:
    """``feature-flags``: warn on stable flags that are disabled."""
    if flags is None:
        return []
    disabled = sorted(
        str(f.get("name"))
        for f in flags
        if f.get("state") == "disabled" and f.get("stability", "stable") == "stable"
    )
    if not disabled:
        return [ok("feature-flags", f"all {len(flags)} stable feature flags enabled")]
    return [
        warn(
            "feature-flags",
            f"{len(disabled)} stable feature flags disabled ({', '.join(disabled)}): the features "
            "are off and the next upgrade may refuse to start; enable them with "
            "`rabbitmqctl enable_feature_flag all`",
            disabled=disabled,
        )
    ]


def check_cluster(nodes: Sequence[Row] | None) -> list[Finding]:
    """``cluster``: fail on a member that is not running and on network partitions."""
    if nodes is None:
        return []
    found = [finding for node in nodes for finding in _membership(node)]
    names = [str(n.get("name")) for n in nodes]
    return found or [ok("cluster", f"{len(names)} node(s) running, no partitions", nodes=names)]


def _membership(node: Row) -> list[Finding]:
    name, partitions = node.get("name"), list(node.get("partitions") or [])
    found = []
    if not node.get("running", False):
        found.append(
            fail(
                "cluster",
                f"node {name} is a cluster member but not running: its quorum queue replicas are "
                f"missing and its classic queues unavailable; start it (`rabbitmqctl -n {name} "
                f"start_app`) or remove it (`rabbitmqctl forget_cluster_node {name}`)",
                node=name,
            )
        )
    if partitions:
        found.append(
            fail(
                "cluster",
                f"node {name} is partitioned from {', '.join(map(str, partitions))}: each side may "
                "accept work the other does not see; restart the minority side's nodes",
                node=name,
                partitions=partitions,
            )
        )
    return found


def check_alarms(nodes: Sequence[Row] | None) -> list[Finding]:
    """``alarms``: fail on a memory or disk alarm (RabbitMQ blocks every publisher)."""
    if nodes is None:
        return []
    found = [finding for node in nodes for finding in _alarms(node)]
    return found or [ok("alarms", "no memory or disk alarm")]


# (alarm flag, what, amount field, what the amount is, limit field, what to do)
_ALARMS = (
    ("mem_alarm", "memory", "mem_used", "used", "mem_limit",
     "consume the backlog, or raise vm_memory_high_watermark"),
    ("disk_free_alarm", "disk", "disk_free", "free", "disk_free_limit",
     "free disk space, or lower disk_free_limit"),
)  # fmt: skip


def _alarms(node: Row) -> list[Finding]:
    name = node.get("name")
    return [
        fail(
            "alarms",
            f"{what} alarm on {name} ({_mib(node.get(amount))} {shown}, limit "
            f"{_mib(node.get(limit))}): publishers are blocked; {fix}",
            node=name,
            **{amount: node.get(amount), limit: node.get(limit)},
        )
        for flag, what, amount, shown, limit, fix in _ALARMS
        if node.get(flag)
    ]


def _mib(value: object) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, int | float) else "?"


def leader_limit(queues: int, nodes: int) -> int:
    """The most quorum leaders one node may hold before the spread counts as unbalanced:
    an even share rounded up, plus one (one queue off an even spread is not worth a word)."""
    return math.ceil(queues / max(nodes, 1)) + 1


def check_leaders(
    queues: Sequence[Row] | None, nodes: Sequence[Row] | None, expected: Expected
) -> list[Finding]:
    """``quorum-leaders``: fail on a quorum queue of the prefix without a leader on a running
    node; warn when one node leads more than :func:`leader_limit` of them."""
    if queues is None or nodes is None:
        return []
    running = [str(n["name"]) for n in nodes if n.get("running")]
    quorum = [q for q in queues if q.get("type") == "quorum" and expected.owns(str(q["name"]))]
    if not quorum:
        return [ok("quorum-leaders", f"no quorum queues under prefix {expected.prefix!r}")]
    leaders = {str(q["name"]): str(q.get("leader") or q.get("node") or "") for q in quorum}
    found = [
        fail(
            "quorum-leaders",
            f"quorum queue {name} has no leader on a running node "
            f"(leader: {leader or 'none'}): it accepts and delivers nothing",
            queue=name,
            leader=leader or None,
        )
        for name, leader in sorted(leaders.items())
        if leader not in running
    ]
    counts = Counter({node: 0 for node in running})
    counts.update(leader for leader in leaders.values() if leader in running)
    limit = leader_limit(len(quorum), len(running))
    data = {"leaders": dict(sorted(counts.items())), "limit": limit}
    heavy = sorted(node for node, count in counts.items() if count > limit)
    if heavy:
        found.append(
            warn(
                "quorum-leaders",
                f"{', '.join(f'{n} leads {counts[n]}' for n in heavy)} of {len(quorum)} quorum "
                f"queues (limit ceil({len(quorum)}/{len(running)} nodes)+1 = {limit}): that node "
                "does most of the work; run `rabbitmq-queues rebalance quorum --queue-pattern "
                f"'^{re.escape(expected.prefix)}\\.'`",
                **data,
            )
        )
    return found or [
        ok(
            "quorum-leaders",
            f"{len(quorum)} quorum queues, leaders balanced "
            f"({', '.join(f'{n}: {c}' for n, c in sorted(counts.items()))})",
            **data,
        )
    ]
