"""Sending a workflow: compile it, check the store can join it, publish its first steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ..handle import TaskHandle
from .canvas import Chain, Group, Signature, TaskSignature
from .compile import Compiler, needs_join
from .handle import WorkflowHandle
from .store import join_store_of
from .wire import envelope_of_node, expand, flat_ids

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task

CHORD_STORE = (
    "a chord (a group followed by another step, or a group with links) keeps its join in the "
    "result store, and {store} cannot hold one: set results='redis://...' or "
    "results='postgresql://...' on the App (see docs/guide/workflows.md)"
)


async def send_workflow(app: App, sig: Signature[Any, Any]) -> WorkflowHandle[Any]:
    """Send ``sig``'s first steps (confirmed) and return its handle. ConfigurationError,
    before anything is sent, for a first step that waits for a previous result, or for a
    chord when the result store cannot join it."""
    if sig.partial:
        raise ConfigurationError(
            f"the first step of {sig!r} waits for a previous result: give all its arguments"
        )
    sender = app.sender
    store = sender.store
    settings = sender.settings
    assert settings is not None  # attached with the store
    compiled = Compiler(settings, store.reply_to()).compile(sig)
    if join_store_of(store) is None and needs_join(compiled.root):
        raise ConfigurationError(CHORD_STORE.format(store=type(store).__name__))
    handles: dict[str, TaskHandle[Any]] = {}
    tasks = _final_tasks(sig)
    for task_id, task in zip(flat_ids(compiled.shape), tasks, strict=True):
        store.track(task_id, task.name)
        handles[task_id] = TaskHandle(task_id, task.name, store, task.validate_result)
    root = compiled.root["id"]  # the workflow's ID (see taskq.workflow.visibility)
    envelopes = [
        envelope_of_node(settings, node, args, meta, claimed=False, root=root)
        for node, args, meta in expand(compiled.root, None, {}, has_value=False)
    ]
    await sender.publish_envelopes(envelopes)
    roots = [envelope.task_id for envelope in envelopes]
    workflow_id = envelopes[0].root_id if envelopes else root
    return WorkflowHandle(compiled.shape, handles, roots, sender.canceller, workflow_id)


def _final_tasks(sig: Signature[Any, Any]) -> list[Task[..., Any]]:
    """The tasks whose results make ``sig``'s value, in the order of its flat result shape."""
    if isinstance(sig, TaskSignature):
        return [sig.task]
    if isinstance(sig, Chain):
        return _final_tasks(sig.steps[-1])
    assert isinstance(sig, Group)
    return [task for member in sig.members for task in _final_tasks(member)]
