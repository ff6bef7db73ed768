"""Typed workflows: signatures, chain, group, chord, link and link_error.

``add.s(2, 2)`` is a signature; ``a.s(1) | b.s() | c.s()`` a chain; ``chord(group(...),
callback.s())`` a chord whose callback runs exactly once (see docs/guide/workflows.md).
"""

from .canvas import Chain, Group, Signature, TaskOptions, TaskSignature, chain, chord, group
from .handle import WorkflowHandle
from .store import JoinStore

__all__ = [
    "Chain",
    "Group",
    "JoinStore",
    "Signature",
    "TaskOptions",
    "TaskSignature",
    "WorkflowHandle",
    "chain",
    "chord",
    "group",
]
