"""Alert rules, and deciding which alerts fire. Pure: no I/O.

Rules (set with CLI flags or a TOML file, see :mod:`taskq.dashboard.settings`):

- ``backlog``: a work queue holds more than ``ready`` ready messages for ``for`` seconds;
- ``dead-letters``: a ``.dead`` queue grew. It fires when the queue holds more than it did
  when the dashboard started (or when the alert last resolved), and resolves when an operator
  brings it back down (replay or purge): a dead letter wants someone to look at it;
- ``no-consumer``: a work queue has ready messages and no consumer for ``for`` seconds;
- ``failure-rate``: more than ``percent`` % of the tasks finished in the last ``window``
  seconds failed (once at least ``min_tasks`` finished): of every queue and task together, or
  only those of a ``queue`` and/or of a ``task`` (a task name); ``*`` counts each queue (or
  each task) on its own, one alert each;
- ``worker-missing``: a worker went away without saying so (see taskq.control), for ``for``
  seconds.

``queue`` is a work queue's short name, or ``*`` for every queue. Each rule has an ID (its
kind and a hash of its settings: the same rule keeps it across restarts and reloads), each
alert a key, ``RULE-ID:SUBJECT``, by which it is silenced (:mod:`.silences`). :class:`Alerts` turns
readings (:class:`Reading`) into the alerts firing now and the transitions (fired, resolved)
that the notifier sends to the webhook. Its state (what fires, since when each condition
holds, the dead-letter baselines) is plain JSON (:meth:`Alerts.state`) that the dashboard
stores in its history file and restores after a restart: a firing alert is not sent again,
and its "resolved" still comes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


@dataclasses.dataclass(frozen=True, slots=True)
class QueueReading:
    """One work queue as the rules see it."""

    ready: int
    consumers: int
    dead: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What the rules look at, at one moment."""

    time: float
    queues: dict[str, QueueReading]
    missing: list[str]
    failures: Callable[[float], Mapping[tuple[str, str], tuple[int, int]]]
    """``(failed, finished)`` per ``(queue, task name)`` over the given window in seconds."""


Condition = tuple[str, str, float]
"""``(subject, message, seconds it must hold before the alert fires)``."""


def _queues(rule_queue: str, reading: Reading) -> Iterator[tuple[str, QueueReading]]:
    for name, queue in sorted(reading.queues.items()):
        if rule_queue in ("*", name):
            yield name, queue


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        """Every condition of this rule that holds in ``reading`` (``memory`` is the rule
        kind's state between readings)."""
        raise NotImplementedError


class Backlog(_Rule):
    """More than ``ready`` ready messages in ``queue`` for ``for`` seconds."""

    kind: Literal["backlog"] = "backlog"
    queue: str = "*"
    ready: int = Field(ge=0)
    for_: float = Field(default=60.0, ge=0, alias="for")

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        for name, queue in _queues(self.queue, reading):
            if queue.ready > self.ready:
                message = f"{queue.ready} ready messages in {name} (more than {self.ready})"
                yield name, message, self.for_


class DeadLetters(_Rule):
    """The ``.dead`` queue of ``queue`` grew (``memory``: each queue's baseline count)."""

    kind: Literal["dead-letters"] = "dead-letters"
    queue: str = "*"

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        for name, queue in _queues(self.queue, reading):
            if queue.dead is None:
                continue
            baseline = memory.setdefault(name, queue.dead)
            if queue.dead > baseline:
                new = queue.dead - baseline
                yield name, f"{new} new dead letter(s) in {name} ({queue.dead} in all)", 0.0
            else:
                memory[name] = queue.dead  # replayed or purged: start again from here


class NoConsumer(_Rule):
    """Ready messages in ``queue`` and no consumer, for ``for`` seconds."""

    kind: Literal["no-consumer"] = "no-consumer"
    queue: str = "*"
    for_: float = Field(default=30.0, ge=0, alias="for")

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        for name, queue in _queues(self.queue, reading):
            if queue.ready > 0 and queue.consumers == 0:
                yield name, f"{queue.ready} ready messages in {name} and no consumer", self.for_


class FailureRate(_Rule):
    """More than ``percent`` % failures among the tasks finished in the last ``window`` s: of
    every task, or of ``queue`` and/or ``task`` (``*``: each one on its own)."""

    kind: Literal["failure-rate"] = "failure-rate"
    percent: float = Field(gt=0, le=100)
    window: float = Field(default=300.0, gt=0, le=300.0)
    min_tasks: int = Field(default=10, ge=1)
    queue: str | None = None
    task: str | None = None

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        for (queue, task), (failed, finished) in sorted(self._groups(reading).items(), key=str):
            if finished >= self.min_tasks and failed * 100 > self.percent * finished:
                of = (f" of {task}" if task is not None else "") + (
                    f" in queue {queue}" if queue is not None else "")  # fmt: skip
                message = (f"{failed} of {finished} tasks{of} failed in the last "
                           f"{self.window:.0f} s (more than {self.percent:g} %)")  # fmt: skip
                yield _failure_subject(queue, task), message, 0.0

    def _groups(self, reading: Reading) -> dict[tuple[str | None, str | None], tuple[int, int]]:
        """``(failed, finished)`` of the tasks this rule counts, per alert it may raise: by
        queue and/or by task where the rule names one (None where it does not)."""
        groups: dict[tuple[str | None, str | None], tuple[int, int]] = {}
        for (queue, task), (failed, finished) in reading.failures(self.window).items():
            if self.queue not in (None, "*", queue) or self.task not in (None, "*", task):
                continue
            group = (None if self.queue is None else queue, None if self.task is None else task)
            before = groups.get(group, (0, 0))
            groups[group] = (before[0] + failed, before[1] + finished)
        return groups


def _failure_subject(queue: str | None, task: str | None) -> str:
    """``tasks`` (every task), or ``queue=NAME``, ``task=NAME``, ``queue=NAME task=NAME``."""
    named = [
        f"{what}={name}" for what, name in (("queue", queue), ("task", task)) if name is not None
    ]
    return " ".join(named) or "tasks"


class WorkerMissing(_Rule):
    """A worker missing for ``for`` seconds."""

    kind: Literal["worker-missing"] = "worker-missing"
    for_: float = Field(default=0.0, ge=0, alias="for")

    def holds(self, reading: Reading, memory: dict[str, int]) -> Iterator[Condition]:
        for worker in reading.missing:
            yield worker, f"worker {worker} went away without stopping", self.for_


Rule = Annotated[
    Backlog | DeadLetters | NoConsumer | FailureRate | WorkerMissing, Field(discriminator="kind")
]


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """An alert: which rule, about what, why, and since when its condition holds; ``key``
    names it (``RULE-ID:SUBJECT``) for silences and receivers."""

    rule: str
    subject: str
    message: str
    since: float
    key: str = ""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> Alert:
        """The alert of :meth:`as_json`."""
        return cls(str(data["rule"]), str(data["subject"]), str(data["message"]),
                   float(data["since"]), str(data.get("key") or ""))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """An alert that started firing (``firing``) or stopped (``resolved``) at ``time``."""

    status: Literal["firing", "resolved"]
    alert: Alert
    time: float

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the webhook's and the page's form, without the prefix)."""
        return {"status": self.status, "time": self.time, **self.alert.as_json()}

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> Transition:
        """The transition of :meth:`as_json`."""
        status: Literal["firing", "resolved"] = "firing"
        if data["status"] != "firing":
            status = "resolved"
        return cls(status, Alert.of_json(data), float(data["time"]))


def rule_key(rule: Rule) -> str:
    """What identifies ``rule``: its settings, not its place (a restart or a reload with a
    rule added keeps the state of the others). Settings left unset are left out: a field
    added to a kind does not change the key of the rules written before it."""
    return f"{rule.kind}:{rule.model_dump_json(by_alias=True, exclude_none=True)}"


def rule_id(rule: Rule) -> str:
    """A short, stable ID of ``rule``: its kind and a hash of its settings."""
    return f"{rule.kind}-{hashlib.blake2b(rule_key(rule).encode(), digest_size=4).hexdigest()}"


class Alerts:
    """Evaluates rules on readings and remembers which alerts fire."""

    def __init__(self, rules: list[Rule]) -> None:
        self.firing: dict[str, Alert] = {}
        self._since: dict[str, float] = {}
        self._memory: dict[str, dict[str, int]] = {}
        self._use(rules)

    def _use(self, rules: list[Rule]) -> None:
        self.rules = list(rules)
        self._keys = [rule_key(r) for r in self.rules]
        self._ids = {key: rule_id(r) for key, r in zip(self._keys, self.rules, strict=True)}

    def _public(self, key: str) -> str:
        """The alert key of the internal ``key`` (``RULE-KEY\nSUBJECT``)."""
        rule, subject = key.split("\n", 1)
        return f"{self._ids[rule]}:{subject}"

    def rule_ids(self) -> list[tuple[str, Rule]]:
        """Each rule with its ID, in order."""
        return [(self._ids[key], rule) for key, rule in zip(self._keys, self.rules, strict=True)]

    def state(self) -> dict[str, Any]:
        """What to remember across a restart, as JSON-ready data."""
        return {
            "firing": {key: alert.as_json() for key, alert in self.firing.items()},
            "since": dict(self._since),
            "memory": {kind: dict(memory) for kind, memory in self._memory.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state` (alerts of rules that no longer exist are dropped)."""
        self.firing = {k: dataclasses.replace(Alert.of_json(a), key=self._public(k))
                       for k, a in state.get("firing", {}).items() if self._owned(k)}  # fmt: skip
        self._since = {k: float(t) for k, t in state.get("since", {}).items() if self._owned(k)}
        self._memory = {kind: {q: int(n) for q, n in memory.items()}
                        for kind, memory in state.get("memory", {}).items()}  # fmt: skip

    def _owned(self, key: str) -> bool:
        return key.split("\n", 1)[0] in self._ids

    def reload(self, rules: list[Rule], now: float) -> list[Transition]:
        """Use ``rules`` from now on. The rules that stay keep their state (a firing alert
        is not sent again); the alerts of the rules that went away are resolved."""
        self._use(rules)
        gone = [key for key in self.firing if not self._owned(key)]
        self._since = {k: t for k, t in self._since.items() if self._owned(k)}
        return [Transition("resolved", self.firing.pop(key), now) for key in gone]

    def evaluate(self, reading: Reading) -> list[Transition]:
        """Apply every rule to ``reading``; return what started or stopped firing."""
        holding: dict[str, tuple[str, str, str, float]] = {}
        for key, rule in zip(self._keys, self.rules, strict=True):
            memory = self._memory.setdefault(rule.kind, {})
            for subject, message, delay in rule.holds(reading, memory):
                holding[f"{key}\n{subject}"] = (rule.kind, subject, message, delay)
        now = reading.time
        self._since = {key: self._since.get(key, now) for key in holding}
        changes: list[Transition] = []
        for key, (kind, subject, message, delay) in holding.items():
            since = self._since[key]
            if key in self.firing:  # the message shows the values of now, not of its firing
                self.firing[key] = dataclasses.replace(self.firing[key], message=message)
            elif now - since >= delay:
                self.firing[key] = Alert(kind, subject, message, since, self._public(key))
                changes.append(Transition("firing", self.firing[key], now))
        for key in [k for k in self.firing if k not in holding]:
            changes.append(Transition("resolved", self.firing.pop(key), now))
        return changes

    def active(self) -> list[Alert]:
        """The alerts firing now, oldest first."""
        return sorted(self.firing.values(), key=lambda a: (a.since, a.rule, a.subject))
