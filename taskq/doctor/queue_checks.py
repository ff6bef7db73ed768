"""Checks of the App's queues: arguments that drifted from what the App declares, ready
messages nobody consumes, growing dead-letter queues, and ``consumer_timeout`` against the
tasks' timeouts. Pure functions of a Snapshot and what the App expects."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .expected import Expected
from .findings import Finding, fail, ok, warn
from .snapshot import ConsumerTimeouts, Row, Snapshot

DRIFT_KEYS = frozenset(
    {
        "x-queue-type",
        "x-max-priority",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-dead-letter-strategy",
        "x-overflow",
        "x-message-ttl",
        "x-expires",
        "x-max-length",
        "x-max-length-bytes",
        "x-delivery-limit",
        "x-single-active-consumer",
    }
)
"""Arguments that change what happens to a message: a difference in one is drift. Placement
arguments (leader locator, initial group size) are not compared."""

MARGIN = 60.0
"""Seconds added to the longest task timeout in the consumer_timeout we suggest."""


def _by_name(rows: Sequence[Row] | None) -> dict[str, Row]:
    return {str(r["name"]): r for r in rows or ()}


def argument_differences(expected: Mapping[str, Any], row: Row) -> dict[str, tuple[Any, Any]]:
    """``{argument: (the App's value, the broker's)}`` for one existing queue (None: unset).
    The queue's type is the row's ``type``: a classic queue may have no x-queue-type."""
    actual = {k: v for k, v in (row.get("arguments") or {}).items() if k in DRIFT_KEYS}
    actual["x-queue-type"] = row.get("type", actual.get("x-queue-type", "classic"))
    wanted = {k: v for k, v in expected.items() if k in DRIFT_KEYS}
    wanted.setdefault("x-queue-type", "classic")
    return {
        key: (wanted.get(key), actual.get(key))
        for key in sorted(wanted.keys() | actual.keys())
        if wanted.get(key) != actual.get(key)
    }


def check_arguments(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``queue-arguments``: fail on an existing queue whose arguments differ from what the App
    declares (the App's declare is then refused: it cannot start). From the management API's
    rows, or else from the broker's refusal of a declare over AMQP."""
    found = []
    if snap.queues is not None:
        rows = _by_name(snap.queues)
        for name, wanted in expected.arguments.items():
            if name not in rows:
                continue
            diff = argument_differences(wanted, rows[name])
            if diff:
                shown = "; ".join(
                    f"{k}: App declares {a!r}, broker has {b!r}" for k, (a, b) in diff.items()
                )
                found.append(
                    fail(
                        "queue-arguments",
                        f"{name}: {shown}; {_FIX}",
                        queue=name,
                        differences={k: {"app": a, "broker": b} for k, (a, b) in diff.items()},
                    )
                )
    for name, refusal in sorted(snap.refusals.items()):
        found.append(
            fail("queue-arguments", f"{name}: {refusal}; {_FIX}", queue=name, refusal=refusal)
        )
    if found:
        return found
    if snap.queues is None and not snap.amqp_up:
        return []
    return [ok("queue-arguments", "every existing queue has the arguments the App declares")]


_FIX = "delete the queue after draining it (or move it with a shovel), or change the settings"


def _work_depths(snap: Snapshot, expected: Expected) -> dict[str, tuple[int, int]]:
    """``{work queue: (ready, consumers)}``: passive declares where there are some (exact),
    the management API's rows for the prefix's other work queues (partitions, --queue)."""
    depths = {
        name: (int(row.get("messages_ready") or 0), int(row.get("consumers") or 0))
        for name, row in _by_name(snap.queues).items()
        if expected.is_work_queue(name)
    }
    for name, depth in snap.depths.items():
        if depth is not None and expected.is_work_queue(name):
            depths[name] = (depth.ready, depth.consumers)
    return depths


def check_unconsumed(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``unconsumed-queues``: fail on a work queue with ready messages and no consumer."""
    if not snap.reachable:
        return []
    depths = _work_depths(snap, expected)
    found = [
        fail(
            "unconsumed-queues",
            f"{name} holds {ready} ready messages and has no consumer: start a worker for "
            f"it (taskq-worker APP --queues {name.removeprefix(f'{expected.prefix}.q.')})",
            queue=name,
            ready=ready,
        )
        for name, (ready, consumers) in sorted(depths.items())
        if ready and not consumers
    ]
    return found or [
        ok(
            "unconsumed-queues",
            f"no work queue holds ready messages without a consumer ({len(depths)} checked)",
        )
    ]


def check_unheld_delays(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``unheld-delays``: fail on a hold queue with ready messages and no consumer: delayed
    tasks that no worker holds will not run at their time."""
    if not snap.reachable:
        return []
    waiting = {
        name: depth
        for name, depth in snap.depths.items()
        if name in expected.hold_queues and depth is not None
    }
    found = [
        fail(
            "unheld-delays",
            f"{name} holds {depth.ready} delayed task(s) due within a minute or overdue, and no "
            f"worker takes them: start a worker for its queue; workers of a taskq version "
            f"before hold queues do not consume them (upgrade the workers first)",
            queue=name,
            ready=depth.ready,
        )
        for name, depth in sorted(waiting.items())
        if depth.ready and not depth.consumers
    ]
    return found or [
        ok("unheld-delays", f"every hold queue with delayed tasks has a worker ({len(waiting)})")
    ]


def _dead_counts(snap: Snapshot, expected: Expected) -> dict[str, int]:
    counts = {
        name: int(row.get("messages") or 0)
        for name, row in _by_name(snap.queues).items()
        if expected.is_dead_queue(name)
    }
    for name, depth in snap.depths.items():
        if depth is not None and expected.is_dead_queue(name):
            counts[name] = depth.ready
    return counts


def _publish_rate(row: Row | None) -> float:
    stats = (row or {}).get("message_stats") or {}
    return float((stats.get("publish_details") or {}).get("rate") or 0.0)


def check_dead_letters(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``dead-letters``: warn on a ``.dead`` queue that grows: more messages in the second of
    two samples (``--interval``), or else messages and a publish rate above 0 in the API."""
    if not snap.reachable:
        return []
    counts, rows, samples = _dead_counts(snap, expected), _by_name(snap.queues), snap.dead_samples
    found = []
    for name, count in sorted(counts.items()):
        if samples is not None and name in samples.after:
            before, after = samples.before.get(name, 0), samples.after[name]
            if after > before:
                found.append(
                    warn(
                        "dead-letters",
                        f"{name} grew from {before} to {after} in "
                        f"{samples.interval:g} s: tasks are failing for good now; see `taskq dlq "
                        f"list {name.removeprefix(f'{expected.prefix}.q.').removesuffix('.dead')}`",
                        queue=name,
                        before=before,
                        after=after,
                        interval=samples.interval,
                    )
                )
        elif count and _publish_rate(rows.get(name)) > 0:
            rate = _publish_rate(rows.get(name))
            found.append(
                warn(
                    "dead-letters",
                    f"{name} holds {count} messages and receives {rate:.2f}/s: "
                    "tasks are failing for good now; see `taskq dlq list`",
                    queue=name,
                    messages=count,
                    rate=rate,
                )
            )
    if found:
        return found
    held = {n: c for n, c in counts.items() if c}
    if samples is not None:
        how = f"over {samples.interval:g} s"
    elif snap.queues is not None:
        how = "by the API's publish rates"
    else:
        how = "not sampled: give --interval SECONDS to see growth"
    detail = f"no dead-letter queue grows ({how})" + (
        f"; {sum(held.values())} dead letters held in {len(held)} queues" if held else ""
    )
    return [ok("dead-letters", detail, held=held)]


def _queue_timeouts(queues: Sequence[Row] | None) -> dict[str, int]:
    """Per-queue consumer timeouts (ms, RabbitMQ 3.12+): an ``x-consumer-timeout`` argument,
    or a ``consumer-timeout`` key of the queue's effective policy (the argument wins)."""
    found = {}
    for row in queues or ():
        policy = row.get("effective_policy_definition") or {}
        value = (row.get("arguments") or {}).get(
            "x-consumer-timeout", policy.get("consumer-timeout")
        )
        if isinstance(value, int):
            found[str(row["name"])] = value
    return found


def _limit_for(
    queue: str, timeouts: ConsumerTimeouts, per_queue: Mapping[str, int]
) -> tuple[int | None, str]:
    """The consumer timeout (ms, None: none) a delivery from ``queue`` lives under, and where
    it comes from. The smallest of the nodes' values: a worker may connect to any of them."""
    if queue in per_queue:
        return per_queue[queue], f"x-consumer-timeout of {queue}"
    values = [(ms, node) for node, ms in timeouts.per_node.items() if ms is not None]
    if not values:
        return None, timeouts.source
    ms, node = min(values)
    return ms, f"consumer_timeout of {node}, read by {timeouts.source}"


def suggested_timeout_ms(task_timeout: float) -> int:
    """A consumer_timeout that lets a task of ``task_timeout`` seconds finish: its timeout plus
    :data:`MARGIN` (its delivery may wait a moment before it starts)."""
    return math.ceil((task_timeout + MARGIN) * 1000)


def check_consumer_timeout(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``consumer-timeout``: fail on a task whose timeout exceeds the consumer timeout its
    queue lives under (RabbitMQ closes the worker's channel and redelivers the task while it
    still runs); warn on a task without a timeout (it may run longer)."""
    timeouts = snap.consumer_timeouts
    if timeouts is None or not expected.task_timeouts:
        return [ok("consumer-timeout", "no tasks to compare (give the App with --app)")]
    per_queue = _queue_timeouts(snap.queues)
    found = []
    for task, (queue, seconds) in sorted(expected.task_timeouts.items()):
        limit, source = _limit_for(queue, timeouts, per_queue)
        if limit is None:
            continue
        data = {
            "task": task,
            "queue": queue,
            "timeout": seconds,
            "consumer_timeout_ms": limit,
            "source": source,
        }
        if seconds is None:
            found.append(
                warn(
                    "consumer-timeout",
                    f"task {task} has no timeout, the broker a consumer timeout of "
                    f"{limit / 1000:g} s ({source}): a run that lasts longer is redelivered "
                    "while it still runs; give the task a timeout "
                    "(@app.task(timeout=...) or task_timeout)",
                    **data,
                )
            )
        elif seconds * 1000 > limit:
            want = suggested_timeout_ms(seconds)
            found.append(
                fail(
                    "consumer-timeout",
                    f"task {task} may run {seconds:g} s, longer than the consumer timeout of "
                    f"{limit / 1000:g} s ({source}): RabbitMQ closes the worker's channel and "
                    f"redelivers the task while it still runs; set consumer_timeout = {want} in "
                    "rabbitmq.conf on every node (or, on 3.12+, a consumer-timeout policy on "
                    f"{queue}), or lower the task's timeout",
                    suggested_ms=want,
                    **data,
                )
            )
    if found:
        return found
    longest = max((s for _, s in expected.task_timeouts.values() if s is not None), default=None)
    return [
        ok(
            "consumer-timeout",
            f"every task's timeout fits the consumer timeout ({timeouts.source}); longest "
            f"task timeout: {'-' if longest is None else f'{longest:g} s'}",
            per_node=dict(timeouts.per_node),
        )
    ]


def check_old_delay_levels(snap: Snapshot, expected: Expected) -> list[Finding]:
    """``old-delay-levels``: what still waits in the binary delay levels of taskq before
    issue 25, and how to remove them once empty (nothing when they do not exist)."""
    levels = {
        name: depth
        for name, depth in snap.depths.items()
        if name in expected.old_delay_levels and depth is not None
    }
    if not levels:
        return []
    waiting = sum(depth.ready for depth in levels.values())
    delete = (
        f"delete them: for L in $(seq 0 35); do rabbitmqctl delete_queue "
        f"{expected.prefix}.delay.$L; done (and the exchanges of the same names)"
    )
    if waiting:
        return [
            ok(
                "old-delay-levels",
                f"{waiting} delayed message(s) sent before the upgrade still wait in the binary "
                f"delay levels {expected.prefix}.delay.0-35: they drain into their work queues "
                f"by themselves; once `taskq inspect scheduled` shows none there, {delete}",
                waiting=waiting,
            )
        ]
    return [
        ok(
            "old-delay-levels",
            f"the binary delay levels {expected.prefix}.delay.0-35 of an older version are "
            f"empty; once no producer of an older version runs, {delete}",
            waiting=0,
        )
    ]
