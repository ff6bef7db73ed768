"""Signatures and their composition: chain, group, chord, link and link_error. Pure values.

``Signature[A, R]`` is a piece of work that takes a previous result of type ``A`` and gives an
``R``. A complete signature (``add.s(2, 2)``) ignores the previous result: it is a
``Signature[object, R]``, which fits wherever any previous result comes from. A partial one
(``add.s(2)``) receives the previous result as its first argument: ``Signature[int, int]``.
Only a complete signature can be sent (``await sig.delay()``).

Typing limits (mypy, ParamSpec): ``task.s(...)`` is checked against the task's parameters,
and ``a | b``, ``chain(...)`` (up to 6 steps) and ``chord(...)`` check that each step can take
the result before it. A group of signatures of different result types is a
``list[object]``; a chain of more than 6 steps, built with ``chain(...)``, is not checked
(use ``|``, which is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..exceptions import ConfigurationError, InvalidArguments
from ..topology import check_amqp_name

if TYPE_CHECKING:
    from ..app import App
    from ..task import Task
    from .handle import WorkflowHandle

A = TypeVar("A")
A_contra = TypeVar("A_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R")
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")
R5 = TypeVar("R5")
R6 = TypeVar("R6")
S = TypeVar("S", bound="Signature[Any, Any]")


class Signature(Generic[A_contra, R_co]):
    """A step of a workflow: takes a previous result ``A`` (complete signatures ignore it),
    gives an ``R``. Immutable: ``link``, ``link_error`` and ``options`` return new ones."""

    __slots__ = ()

    links: tuple[Signature[Any, Any], ...]
    error_links: tuple[Signature[Any, Any], ...]

    @property
    def partial(self) -> bool:
        """Whether this step receives the previous result (as its first argument)."""
        raise NotImplementedError

    @property
    def app(self) -> App:
        """The App of the first task in this step (what ``delay`` sends through)."""
        raise NotImplementedError

    def link(self: S, callback: Signature[Any, Any]) -> S:
        """Also run ``callback`` once this step succeeded (a partial callback receives its
        result). The workflow's own result does not wait for it."""
        return dataclasses.replace(self, links=(*self.links, callback))  # type: ignore[type-var]

    def link_error(self: S, callback: Signature[str, Any]) -> S:
        """Run ``callback`` if this step (any task in it, or one it waits for) fails for good;
        a partial callback receives the ID of the task that failed. It runs once per
        workflow with a durable result store (see docs/guide/workflows.md)."""
        errors = (*self.error_links, callback)
        return dataclasses.replace(self, error_links=errors)  # type: ignore[type-var]

    def __or__(self: Signature[A, R1], other: Signature[R1, R2]) -> Signature[A, R2]:
        return chain(self, other)

    def delay(
        self: Signature[object, R1], *, app: App | None = None
    ) -> Awaitable[WorkflowHandle[R1]]:
        """Send the workflow through ``app`` (default: the App of its first task); the
        handle's ``result()`` is its final value. ConfigurationError (before anything is
        sent) for a chord when the result store cannot join one."""
        from .send import send_workflow

        return send_workflow(self.app if app is None else app, self)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskOptions:
    """Per-step options: the queue, priority and task ID of this step's message."""

    queue: str | None = None
    priority: int | None = None
    task_id: str | None = None

    def __post_init__(self) -> None:
        if self.task_id is not None:
            check_amqp_name(self.task_id, "task_id")


@dataclasses.dataclass(frozen=True, slots=True)
class TaskSignature(Signature[A_contra, R_co]):
    """One task with its arguments bound (and, if ``partial``, its first one to come)."""

    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    partial_call: bool
    step_options: TaskOptions = TaskOptions()
    links: tuple[Signature[Any, Any], ...] = ()
    error_links: tuple[Signature[Any, Any], ...] = ()

    @property
    def partial(self) -> bool:
        return self.partial_call

    @property
    def app(self) -> App:
        return self.task.app

    def options(
        self, *, queue: str | None = None, priority: int | None = None, task_id: str | None = None
    ) -> TaskSignature[A_contra, R_co]:
        """This step with its queue, priority or task ID set (None keeps the current)."""
        now = self.step_options
        chosen = TaskOptions(
            queue=now.queue if queue is None else queue,
            priority=now.priority if priority is None else priority,
            task_id=now.task_id if task_id is None else task_id,
        )
        return dataclasses.replace(self, step_options=chosen)

    def __repr__(self) -> str:
        later = "<previous>, " if self.partial_call else ""
        return f"{self.task.name}.s({later}{self.args!r}, {self.kwargs!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Chain(Signature[A_contra, R_co]):
    """Steps run one after the other, each given the previous one's result."""

    steps: tuple[Signature[Any, Any], ...]
    links: tuple[Signature[Any, Any], ...] = ()
    error_links: tuple[Signature[Any, Any], ...] = ()

    @property
    def partial(self) -> bool:
        return self.steps[0].partial

    @property
    def app(self) -> App:
        return self.steps[0].app


@dataclasses.dataclass(frozen=True, slots=True)
class Group(Signature[A_contra, R_co]):
    """Members run in parallel; the result is the list of their results, in order."""

    members: tuple[Signature[Any, Any], ...]
    links: tuple[Signature[Any, Any], ...] = ()
    error_links: tuple[Signature[Any, Any], ...] = ()

    @property
    def partial(self) -> bool:
        return any(member.partial for member in self.members)

    @property
    def app(self) -> App:
        return self.members[0].app


def task_signature(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``task.s(*args, **kwargs)``: complete if the arguments fit the whole signature, else
    partial (the previous result first). InvalidArguments if they fit neither way."""
    codec_sig = task.signature
    try:
        bound_args, bound_kwargs = codec_sig.bind(args, kwargs)
    except InvalidArguments as complete_error:
        try:
            bound_args, bound_kwargs = codec_sig.bind_partial(args, kwargs)
        except InvalidArguments:
            raise complete_error from None
        return TaskSignature(task, tuple(bound_args), bound_kwargs, True)
    codec_sig.validate(bound_args, bound_kwargs)
    return TaskSignature(task, tuple(bound_args), bound_kwargs, False)


@overload
def chain(s1: Signature[A, R1], /) -> Signature[A, R1]: ...
@overload
def chain(s1: Signature[A, R1], s2: Signature[R1, R2], /) -> Signature[A, R2]: ...
@overload
def chain(
    s1: Signature[A, R1], s2: Signature[R1, R2], s3: Signature[R2, R3], /
) -> Signature[A, R3]: ...
@overload
def chain(
    s1: Signature[A, R1],
    s2: Signature[R1, R2],
    s3: Signature[R2, R3],
    s4: Signature[R3, R4],
    /,
) -> Signature[A, R4]: ...
@overload
def chain(
    s1: Signature[A, R1],
    s2: Signature[R1, R2],
    s3: Signature[R2, R3],
    s4: Signature[R3, R4],
    s5: Signature[R4, R5],
    /,
) -> Signature[A, R5]: ...
@overload
def chain(
    s1: Signature[A, R1],
    s2: Signature[R1, R2],
    s3: Signature[R2, R3],
    s4: Signature[R3, R4],
    s5: Signature[R4, R5],
    s6: Signature[R5, R6],
    /,
) -> Signature[A, R6]: ...
@overload
def chain(
    s1: Signature[A, Any],
    s2: Signature[Any, Any],
    s3: Signature[Any, Any],
    s4: Signature[Any, Any],
    s5: Signature[Any, Any],
    s6: Signature[Any, Any],
    s7: Signature[Any, Any],
    /,
    *rest: Signature[Any, Any],
) -> Signature[A, Any]: ...
def chain(*steps: Signature[Any, Any]) -> Signature[Any, Any]:
    """Run ``steps`` one after the other, each given the previous result (``a | b | c``)."""
    if not steps:
        raise ConfigurationError("a chain needs at least one step")
    flat: list[Signature[Any, Any]] = []
    for step in steps:
        _check(step)
        if isinstance(step, Chain) and not step.links and not step.error_links:
            flat.extend(step.steps)
        else:
            flat.append(step)
    return Chain(tuple(flat))


@overload
def group(members: Iterable[Signature[A, R]], /) -> Signature[A, list[R]]: ...
@overload
def group(*members: Signature[A, R]) -> Signature[A, list[R]]: ...
def group(*members: Any) -> Signature[Any, Any]:
    """Run ``members`` in parallel; the result is the list of their results, in order.
    ``group([a, b])`` or ``group(a, b)``."""
    if len(members) == 1 and not isinstance(members[0], Signature):
        members = tuple(members[0])
    if not members:
        raise ConfigurationError("a group needs at least one member")
    for member in members:
        _check(member)
    return Group(tuple(members))


def chord(
    header: Signature[A, list[R]] | Iterable[Signature[A, R]],
    callback: Signature[list[R], R2],
) -> Signature[A, R2]:
    """Run the group ``header``, then ``callback`` with the list of its results, once every
    member succeeded: exactly once, through redeliveries and restarts (the join lives in the
    result store, which must be able to hold it: Redis or PostgreSQL)."""
    members = header if isinstance(header, Signature) else group(header)
    return chain(members, callback)


def _check(step: object) -> None:
    if not isinstance(step, Signature):
        raise ConfigurationError(f"a workflow step must be a signature (task.s(...)), got {step!r}")
