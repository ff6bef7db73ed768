"""Fetch what the checks need: the management HTTP API (taskq.queue_depths' helpers), passive
declares over AMQP, and ``consumer_timeout`` through ``rabbitmqctl eval``. The only module of
the doctor that does I/O; it never changes anything on the broker (a declare of an existing
queue with the App's arguments is a no-op when they agree, and refused when they do not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import urllib.error
from collections.abc import Mapping, Sequence
from typing import Any

from ..exceptions import TaskqError
from ..queue_depths import api_error, get_json, management_url, vhost_path
from ..redact import redact_url
from ..settings import Settings
from ..transport import Transport, make_transport, split_urls
from .expected import Expected
from .snapshot import ConsumerTimeouts, DeadSamples, Depth, Snapshot

DEFAULT_CONSUMER_TIMEOUT_MS = 1_800_000
"""RabbitMQ's default consumer_timeout (30 minutes, 3.8.15 and later)."""
QUEUE_COLUMNS = (
    "name,type,node,leader,members,online,state,arguments,messages,messages_ready,consumers,"
    "message_stats,effective_policy_definition"
)
# Every running node's consumer_timeout: [{Node, {ok, Ms}} | {Node, undefined} | ...].
_EVAL = (
    "[{N, rpc:call(N, application, get_env, [rabbit, consumer_timeout], 5000)}"
    " || N <- rabbit_nodes:all_running()]."
)
_EVAL_ROW = re.compile(r"\{'?([^',{}\s]+)'?,\s*(?:\{ok,\s*(\w+)\}|(undefined))\}")


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """How to reach what the doctor asks."""

    management_urls: Sequence[str] = ()
    """Management API base URLs to try in order (default: each broker host, port 15672)."""
    interval: float | None = None
    """Count the ``.dead`` queues twice this many seconds apart."""
    node: str | None = None
    """The node ``rabbitmqctl -n`` asks for consumer_timeout (default: the API's node)."""
    consumer_timeout_ms: int | None = None
    """consumer_timeout as the operator knows it (0: disabled): nothing is asked then."""
    rabbitmqctl: Sequence[str] = ()
    """The command that runs rabbitmqctl (default: ``rabbitmqctl`` on the PATH); given, it may
    name its node itself, and ``-n`` is added only when a node is known."""


def api_candidates(broker: str, explicit: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(base, vhost, credentials)`` of each management API to try, in order."""
    urls = split_urls(broker)
    if explicit:
        return [management_url(urls[0], base) for base in explicit]
    return list(dict.fromkeys(management_url(url) for url in urls))


async def gather(settings: Settings, expected: Expected, options: Options) -> Snapshot:
    """Ask the broker everything the checks need (never raises for an unreachable broker:
    the Snapshot says what did not answer)."""
    api = await _api(settings.broker, options.management_urls)
    transport = make_transport(settings.transport_options(), connection_name="taskq-doctor")
    amqp_error: str | None = None
    try:
        await transport.connect()
    except (TaskqError, OSError) as exc:
        amqp_error = redact_url(str(exc))
    try:
        amqp = await _amqp(transport, expected, api) if amqp_error is None else {}
        samples = await _samples(
            transport if amqp_error is None else None,
            expected,
            options.interval,
            amqp.get("depths", {}),
        )
    finally:
        await transport.close()
    timeouts = await consumer_timeouts(options, api.get("overview"))
    return Snapshot(
        broker=redact_url(settings.broker),
        amqp_error=amqp_error,
        dead_samples=samples,
        consumer_timeouts=timeouts,
        **api,
        **amqp,
    )


async def _api(broker: str, explicit: Sequence[str]) -> dict[str, Any]:
    """The management API's answers, from the first candidate that answers."""
    errors = []
    for base, vhost, credentials in api_candidates(broker, explicit):
        try:
            overview = await asyncio.to_thread(get_json, base, "/api/overview", credentials)
            paths = (
                "/api/feature-flags",
                "/api/nodes",
                vhost_path("queues", vhost) + f"?columns={QUEUE_COLUMNS}",
            )
            flags, nodes, queues = await asyncio.gather(
                *(asyncio.to_thread(get_json, base, p, credentials) for p in paths)
            )
        except (OSError, ValueError, urllib.error.URLError) as exc:
            errors.append(f"{redact_url(base)}: {api_error(exc)}")
            continue
        return {
            "api_base": redact_url(base),
            "overview": overview,
            "feature_flags": flags,
            "nodes": nodes,
            "queues": queues,
        }
    return {"api_error": "; ".join(errors) or "no management URL"}


async def _amqp(transport: Transport, expected: Expected, api: Mapping[str, Any]) -> dict[str, Any]:
    """Server properties and passive declares of the App's queues; without the API, the
    broker's refusals of the App's arguments for the queues that exist."""
    depths: dict[str, Depth | None] = {}
    checked = (*expected.work_queues, *expected.dead_queues, *expected.hold_queues)
    for name in (*checked, *expected.old_delay_levels):
        if name in expected.old_delay_levels[1:] and depths[expected.old_delay_levels[0]] is None:
            break  # the old levels were declared all together or not at all
        found = await transport.queue_depth(name)
        depths[name] = None if found is None else Depth(found.messages, found.consumers)
    refusals: dict[str, str] = {}
    if "overview" not in api:
        for name, arguments in expected.arguments.items():
            exists = (
                depths[name] is not None
                if name in depths
                else (await transport.queue_depth(name) is not None)
            )
            refusal = await transport.argument_refusal(name, dict(arguments)) if exists else None
            if refusal is not None:
                refusals[name] = refusal
    return {"server": await transport.server_properties(), "depths": depths, "refusals": refusals}


async def _samples(
    transport: Transport | None,
    expected: Expected,
    interval: float | None,
    first: Mapping[str, Depth | None],
) -> DeadSamples | None:
    """Count the ``.dead`` queues again ``interval`` seconds after the first passive declares
    (exact counts; the management API's lag by up to its collection interval)."""
    if interval is None or transport is None:
        return None
    before = {n: d.ready for n, d in first.items() if d is not None and expected.is_dead_queue(n)}
    await asyncio.sleep(interval)
    after = {}
    for name in before:
        depth = await transport.queue_depth(name)
        if depth is not None:
            after[name] = depth.messages
    return DeadSamples(interval, before, after)


async def consumer_timeouts(
    options: Options, overview: Mapping[str, Any] | None
) -> ConsumerTimeouts:
    """Every running node's consumer_timeout: as given, else asked with ``rabbitmqctl eval``
    (the management API does not show it on 3.x), else RabbitMQ's default, marked assumed."""
    if options.consumer_timeout_ms is not None:
        given = options.consumer_timeout_ms or None
        return ConsumerTimeouts({"all nodes": given}, "--consumer-timeout")
    node = options.node or (overview or {}).get("node")
    found = shutil.which("rabbitmqctl")
    command = list(options.rabbitmqctl) or ([found] if found else [])
    if not command:
        why = "rabbitmqctl not found"
    elif not node and not options.rabbitmqctl:
        why = "no node to ask (give --node or reach the management API)"
    else:
        label = " ".join(["rabbitmqctl", *(["-n", str(node)] if node else [])])
        per_node, why = await _ask_nodes([*command, *label.split()[1:]], label)
        if per_node:
            return ConsumerTimeouts(per_node, f"{label} eval")
    return ConsumerTimeouts(
        {"all nodes": DEFAULT_CONSUMER_TIMEOUT_MS},
        f"RabbitMQ's default, assumed: {why}; give --consumer-timeout MS",
        assumed=True,
    )


async def _ask_nodes(command: Sequence[str], label: str) -> tuple[dict[str, int | None], str]:
    """``({node: ms or None}, "")`` from ``command eval ...``, or ``({}, why not)``."""
    process = await asyncio.create_subprocess_exec(
        *command,
        "eval",
        _EVAL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {}, f"{label} did not answer in 30 s"
    per_node = parse_eval(out.decode(errors="replace"))
    if process.returncode != 0 or not per_node:
        last = (err or out).decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return {}, f"{label} failed: {redact_url(last[0])}"
    return per_node, ""


def parse_eval(text: str) -> dict[str, int | None]:
    """``{node: consumer_timeout in ms, or None when disabled}`` from the eval's answer, e.g.
    ``[{rabbit@a,{ok,1800000}},{'rabbit@b-2',undefined}]``."""
    found: dict[str, int | None] = {}
    for node, value, undefined in _EVAL_ROW.findall(text):
        found[node] = int(value) if not undefined and value.isdigit() else None
    return found
