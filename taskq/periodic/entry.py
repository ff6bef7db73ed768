"""A periodic entry: a task, its schedule and arguments, and what to do about missed ticks.

Pure. Each firing's task ID is derived from the entry and its tick
(``periodic:{entry}:{tick}``), so every replica names a firing alike. A firing asked for by
hand (the dashboard's *Run now*) gets ``periodic:{entry}:run:{uuid}``, new at each call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Literal, cast, get_args

from .. import codec
from ..exceptions import ConfigurationError, InvalidArguments
from ..task import Task
from ..topology import MAX_NAME_BYTES
from .schedule import Schedule, iso

CatchUp = Literal["one", "all", "skip"]
"""What a scheduler does with ticks that came due while no scheduler was active:
``one`` fires the latest of them once (late), ``all`` fires every one of them (late),
``skip`` fires none of them. Ticks that come due while a scheduler is active always fire."""

CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)
ID_PREFIX = "periodic:"
_ID_NAMESPACE = uuid.UUID("6f1c2a4e-53a1-4d52-9a43-2d1a7c9e8b10")
# The longest tick text: 2024-03-31T01:00:00.123Z.
_TICK_BYTES = 24
_MAX_LABEL_BYTES = MAX_NAME_BYTES - len(ID_PREFIX) - 1 - _TICK_BYTES
RUN_MARK = ":run:"
# ":run:" and 32 hex digits, where a scheduled firing has ":" and its tick.
_MAX_RUN_LABEL_BYTES = MAX_NAME_BYTES - len(ID_PREFIX) - len(RUN_MARK) - 32


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodicEntry:
    """A task fired on a schedule with fixed arguments. Named after its task."""

    task: Task[Any, Any]
    schedule: Schedule
    args: list[Any]
    kwargs: dict[str, Any]
    catch_up: CatchUp

    @property
    def name(self) -> str:
        """The entry's name: its task's name."""
        return self.task.name

    def firing_id(self, tick: dt.datetime) -> str:
        """The task ID of the firing for ``tick``: the same in every replica."""
        return firing_id(self.name, tick)


def firing_id(entry: str, tick: dt.datetime) -> str:
    """``periodic:{entry}:{tick}`` (a UUID5 of the entry name stands in for a name too long
    for AMQP's 255-byte message IDs)."""
    return f"{ID_PREFIX}{_label(entry, _MAX_LABEL_BYTES)}:{iso(tick)}"


def run_now_id(entry: str) -> str:
    """A new task ID for a firing of ``entry`` outside its schedule:
    ``periodic:{entry}:run:{32 hex digits}``. It never equals a scheduled firing's ID, which
    ends in its tick's ``Z`` (whatever the entry names), nor another call's (a random UUID)."""
    return f"{ID_PREFIX}{_label(entry, _MAX_RUN_LABEL_BYTES)}{RUN_MARK}{uuid.uuid4().hex}"


def _label(entry: str, max_bytes: int) -> str:
    if len(entry.encode()) > max_bytes:
        return str(uuid.uuid5(_ID_NAMESPACE, entry))
    return entry


def make_entry(
    task: Task[Any, Any],
    schedule: Schedule,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any] | None,
    catch_up: str,
) -> PeriodicEntry:
    """A checked entry. The arguments must fit the task's signature, validate against its
    annotations (when those resolve at import) and be encodable: ConfigurationError (or
    InvalidArguments for a call that does not bind) at import, not at the first tick."""
    if catch_up not in CATCH_UP_POLICIES:
        raise ConfigurationError(
            f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}; got {catch_up!r}"
        )
    if not isinstance(args, tuple | list):
        raise ConfigurationError(f"args= must be a tuple or a list, got {args!r}")
    bound_args, bound_kwargs = task.signature.bind(tuple(args), dict(kwargs or {}))
    try:
        task.signature.validate(bound_args, bound_kwargs)
    except NameError:
        pass  # an annotation names something defined later: the worker validates it
    except InvalidArguments as exc:
        raise InvalidArguments(f"periodic entry {task.name!r}: {exc}") from None
    codec.pack([bound_args, bound_kwargs])  # EncodeError now, not at the first tick
    return PeriodicEntry(task, schedule, bound_args, bound_kwargs, cast(CatchUp, catch_up))
