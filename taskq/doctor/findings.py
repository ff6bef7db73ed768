"""What a check found, and the exit code that a list of findings means. Pure."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any


class Status(enum.StrEnum):
    """How bad one finding is: ``ok``, ``warn`` (worth a look) or ``fail`` (broken now)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's report: the check, its status, a sentence, and the numbers
    behind it (``data``, JSON-serialisable)."""

    check: str
    status: Status
    detail: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """``{check, status, detail, data}``: the stable form of ``taskq doctor --json``."""
        return {
            "check": self.check,
            "status": str(self.status),
            "detail": self.detail,
            "data": self.data,
        }


def ok(check: str, detail: str, **data: Any) -> Finding:
    """A finding that all is well."""
    return Finding(check, Status.OK, detail, data)


def warn(check: str, detail: str, **data: Any) -> Finding:
    """A finding worth a look that does not fail the run (unless ``--strict``)."""
    return Finding(check, Status.WARN, detail, data)


def fail(check: str, detail: str, **data: Any) -> Finding:
    """A finding that fails the run."""
    return Finding(check, Status.FAIL, detail, data)


HEALTHY, UNHEALTHY, UNREACHABLE = 0, 1, 3  # 3: as every taskq command says "broker unreachable"
"""Exit codes of ``taskq doctor``: healthy, some check failed, nothing could be reached."""


def exit_code(findings: Iterable[Finding], *, strict: bool = False, reachable: bool = True) -> int:
    """``UNREACHABLE`` if neither the broker nor its management API answered, else
    ``UNHEALTHY`` if a finding failed (or, with ``strict``, warned), else ``HEALTHY``."""
    if not reachable:
        return UNREACHABLE
    bad = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return UNHEALTHY if any(f.status in bad for f in findings) else HEALTHY
