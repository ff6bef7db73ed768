"""How a workflow travels in its messages, and what follows a step. Pure.

A workflow is compiled, when sent, into *nodes*: msgpack maps, each with its task ID fixed
then (so that a step sent again after a redelivery has the same ID, and is deduplicated).

- task node: ``t`` task name, ``q`` queue, ``p`` priority, ``id`` task ID, ``a`` args,
  ``kw`` kwargs, ``pa`` true if it receives the previous result first, ``rt`` the reply
  address of the sender (AMQP result store only), ``w`` its own workflow map;
- group node: ``g`` member nodes, ``id`` the group's ID (its join's, if it has one), ``w``.

The workflow map (metadata key ``w`` of a schema 4 message, see taskq.message) says what
follows the task: ``n`` the nodes still to run one after the other (a chain's rest), each
packed on its own (msgpack bytes: a step unpacks only the node it sends next and passes the
rest on as it came, so a step of a long chain costs the same as one of a short chain; schema
3 carried them as maps, which a worker still reads), ``j``
the join this task's result goes to (``id``, ``i`` index, ``n`` size, ``c`` the workflow map
to apply to the joined list), ``k`` link nodes, ``e`` error link nodes, ``f`` the IDs of the
workflow's final tasks that can no longer finish if this task fails, ``c`` a claim token
(a step sent by a worker: only one publish of a task ID may run it).

No coordinator and no polling: each step's worker sends what follows it, before it acks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from .. import codec
from ..context import current_or_none
from ..exceptions import DecodeError
from ..message import Envelope
from ..sending import partition_for
from ..settings import Settings

Node = dict[str, Any]
Meta = Mapping[str, Any]

# Keys of the workflow map that pass from a step to the next (the rest stays with its node).
_INHERITED = ("n", "j")


def merged(own: Meta | None, inherited: Meta) -> dict[str, Any]:
    """A node's own workflow map with what it inherits from the step before it."""
    meta = dict(own or {})
    for key in _INHERITED:
        value = inherited.get(key)
        if value:
            meta[key] = value
    if meta.get("n"):
        meta["n"] = packed(meta["n"])
    return meta


def packed(nodes: list[Any]) -> list[bytes]:
    """A chain's rest with each node packed (those that came packed are passed on as they are:
    unpacking and packing the whole rest at every step made a chain's cost quadratic)."""
    return [node if type(node) is bytes else codec.pack(node) for node in nodes]


def unpacked(node: Node | bytes) -> Node:
    """A node of a chain's rest as a map (schema 3 carried maps, schema 4 packed nodes)."""
    if type(node) is bytes:
        value = codec.unpack(node)
        if type(value) is not dict:
            raise DecodeError(f"a workflow node must be a msgpack map, got {value!r}")
        return value
    assert isinstance(node, dict)
    return node


def successors(meta: Meta) -> tuple[list[tuple[Node, dict[str, Any]]], Meta | None]:
    """What follows success, given the workflow map ``meta``: the nodes to send (each with
    what it inherits), and the join to add the result to (None: no join)."""
    follow: list[tuple[Node, dict[str, Any]]] = [(link, {}) for link in meta.get("k", ())]
    rest = meta.get("n") or []
    join = meta.get("j")
    if rest:
        follow.append((unpacked(rest[0]), {"n": rest[1:], "j": join}))
        return follow, None
    return follow, join


def expand(
    node: Node, value: Any, inherited: Meta, *, has_value: bool
) -> list[tuple[Node, list[Any], dict[str, Any]]]:
    """The task messages that sending ``node`` makes: ``(task node, args, workflow map)``.

    A group node expands into its members; when something follows the group (a callback, a
    chain's rest, an outer join, links), each member gets a join ref whose ``c`` is what
    follows, applied to the list of results once the last member joined.
    """
    if "g" not in node:
        args = [value, *node["a"]] if node.get("pa") and has_value else list(node["a"])
        return [(node, args, merged(node.get("w"), inherited))]
    own = node.get("w") or {}
    rest = own.get("n") or inherited.get("n")
    after = {
        key: value
        for key, value in (
            ("n", packed(rest) if rest else None),
            ("j", inherited.get("j")),
            ("k", own.get("k")),
        )
        if value
    }
    members = node["g"]
    out = []
    for index, member in enumerate(members):
        ref = {"j": {"id": node["id"], "i": index, "n": len(members), "c": after}} if after else {}
        out.extend(expand(member, value, ref, has_value=has_value))
    return out


def envelope_of_node(
    settings: Settings,
    node: Node,
    args: list[Any],
    meta: dict[str, Any],
    *,
    claimed: bool,
    after: Envelope | None = None,
    root: str | None = None,
) -> Envelope:
    """The message of a task node. ``claimed``: sent by a worker (it may be sent more than
    once), so it gets a claim token and asks its worker to check for a recorded success.
    ``after``: the step whose outcome sends it (its parent; the workflow's root is theirs).
    ``root``: the workflow's ID, for a step with no parent (sent by a client)."""
    if claimed:
        meta = {**meta, "c": uuid.uuid4().hex}
    parent: Any = after if after is not None else current_or_none()
    task_id = node["id"]
    queue = node["q"]
    return Envelope(
        task_id=task_id,
        task_name=node["t"],
        queue=queue,
        args=args,
        kwargs=dict(node["kw"]),
        priority=node["p"],
        sent_at=time.time(),
        reply_to=node.get("rt"),
        dedupe=claimed,
        parent_id=parent.task_id if parent else None,
        root_id=(parent.root_id or parent.task_id) if parent else root,
        partition=partition_for(settings, queue, None, task_id),
        workflow=meta,
    )


def flat_ids(shape: Any) -> list[str]:
    """The task IDs in a result shape (a task ID, or a list of shapes)."""
    if isinstance(shape, str):
        return [shape]
    return [task_id for part in shape for task_id in flat_ids(part)]
