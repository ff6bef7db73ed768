"""Where a task stands in its workflow, as fields that events and ``taskq inspect`` show.

- ``root_id``: the workflow's ID. Every step of a workflow sent from a client carries it (the
  workflow's first node: a chain's first task, or a group's ID); a workflow sent from inside
  a task belongs to that task's tree, and has that tree's root.
- ``parent_id``: the task whose outcome sent this one (a chain's previous step, the member
  that completed a chord's join); none for the steps the client sent.
- ``join``, ``index``, ``of``: for a member of a group that something follows (a chord's
  member), the join it goes to and its position there (from 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..text import printable


def position(workflow: Mapping[str, Any] | None) -> dict[str, Any]:
    """A chord member's join and its index there (empty for any other task)."""
    join = (workflow or {}).get("j")
    if not isinstance(join, Mapping):
        return {}
    return {"join": printable(str(join.get("id"))), "index": join.get("i"), "of": join.get("n")}


def workflow_fields(
    parent_id: str | None, root_id: str | None, workflow: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A task's place in its workflow (see the module doc): only the fields it has."""
    fields: dict[str, Any] = {}
    if parent_id is not None:
        fields["parent_id"] = printable(parent_id)
    root = root_id if root_id is not None else parent_id
    if root is not None:
        fields["root_id"] = printable(root)
    fields.update(position(workflow))
    return fields
