"""Compile a signature tree into the nodes that travel in its messages (see wire). Pure.

Every task and group gets its ID here, once, at send time. Each task node learns which of the
workflow's final tasks can no longer finish if it fails (``f``), and the error links that
apply to it (its own and those of every step that waits for it, so that a chord whose member
fails runs its callback's ``link_error``).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from ..settings import Settings, check_priority, check_queue_name
from .canvas import Chain, Group, Signature, TaskSignature
from .wire import Node, flat_ids


@dataclasses.dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled workflow: its root node and the shape of its result (a task ID, or a list
    of shapes for a group), which its handle awaits."""

    root: Node
    shape: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Compiler:
    """Compiles signatures for one App's settings and reply address."""

    settings: Settings
    reply_to: str | None

    def compile(self, sig: Signature[Any, Any]) -> Compiled:
        """The nodes and result shape of ``sig``."""
        return self._node(sig, [], [])

    def _node(self, sig: Signature[Any, Any], down: list[str], errors: list[Node]) -> Compiled:
        errors = [*(self.compile(e).root for e in sig.error_links), *errors]
        if isinstance(sig, TaskSignature):
            return self._task(sig, down, errors)
        if isinstance(sig, Chain):
            return self._chain(sig, down, errors)
        assert isinstance(sig, Group)
        links = [self.compile(link).root for link in sig.links]
        members = [self._node(member, down, errors) for member in sig.members]
        node: Node = {"g": [m.root for m in members], "id": _new_id()}
        if links:
            node["w"] = {"k": links}
        return Compiled(node, [m.shape for m in members])

    def _chain(self, sig: Chain[Any, Any], down: list[str], errors: list[Node]) -> Compiled:
        steps = list(sig.steps)
        if sig.links:
            last_step = steps[-1]
            steps[-1] = dataclasses.replace(last_step, links=(*last_step.links, *sig.links))  # type: ignore[type-var]
        last = self._node(steps[-1], down, errors)
        # A failure before the last step stops what the last step makes, and runs the error
        # links of every step after it (each step is compiled before the ones before it).
        waiting = [*flat_ids(last.shape), *down]
        nodes = [last.root]
        for step in reversed(steps[:-1]):
            errors = _error_links(nodes[0], errors)
            nodes.insert(0, self._node(step, waiting, errors).root)
        head = nodes[0]
        if len(nodes) > 1:
            head["w"] = {**head.get("w", {}), "n": nodes[1:]}
        return Compiled(head, last.shape)

    def _task(self, sig: TaskSignature[Any, Any], down: list[str], errors: list[Node]) -> Compiled:
        config, options = sig.task.config, sig.step_options
        queue = config.queue if options.queue is None else check_queue_name(options.queue)
        if options.priority is not None:
            check_priority(self.settings, options.priority, queue, explicit=True)
        priority = options.priority if options.priority is not None else config.priority
        if priority is None:
            priority = self.settings.default_priority
        task_id = options.task_id or _new_id()
        meta: dict[str, Any] = {}
        if sig.links:
            meta["k"] = [self.compile(link).root for link in sig.links]
        if errors:
            meta["e"] = errors
        if down:
            meta["f"] = down
        node: Node = {
            "t": config.name,
            "q": queue,
            "p": check_priority(self.settings, priority, queue),
            "id": task_id,
            "a": list(sig.args),
            "kw": dict(sig.kwargs),
        }
        if sig.partial_call:
            node["pa"] = True
        if self.reply_to is not None:
            node["rt"] = self.reply_to
        if meta:
            node["w"] = meta
        return Compiled(node, task_id)


def needs_join(node: Node, follow: bool = False) -> bool:
    """Whether sending ``node`` makes a join somewhere: a group with something after it
    (``follow``: the step it is in has something after it)."""
    own = node.get("w") or {}
    rest = own.get("n") or []
    if "g" in node and (follow or rest or own.get("k")):
        return True
    if "g" in node and any(needs_join(member) for member in node["g"]):
        return True
    for index, step in enumerate(rest):
        if needs_join(step, follow or index < len(rest) - 1):
            return True
    return any(needs_join(other) for other in (*own.get("k", ()), *own.get("e", ())))


def _error_links(node: Node, known: list[Node]) -> list[Node]:
    """``known`` and the error links in the compiled ``node`` (each once, by ID)."""
    found = {link["id"]: link for link in known}
    own = node.get("w") or {}
    for link in own.get("e", ()):
        found.setdefault(link["id"], link)
    for nested in [*node.get("g", ()), *own.get("n", ())]:
        for link in _error_links(nested, []):
            found.setdefault(link["id"], link)
    return list(found.values())


def _new_id() -> str:
    return str(uuid.uuid4())
