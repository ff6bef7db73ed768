"""The alerts of one dashboard run: rules evaluated on each reading, silences, the webhooks
told of each change, and the rules file re-read when it changes.

:class:`Alerting` holds the pure parts (taskq.dashboard.alerts, taskq.dashboard.silences) and
the webhooks' senders (taskq.dashboard.notify); the Dashboard calls it at each reading and
keeps its :meth:`Alerting.state` in the history file, so that a restart neither sends a
firing alert again, nor loses its resolution, nor forgets a silence.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..exceptions import ConfigurationError
from .alerts import Alerts, Reading, Rule, Transition
from .notify import Webhook
from .settings import DashboardSettings, RulesFile
from .silences import MAX_MINUTES, Silences, covers, keyed, shown

log = logging.getLogger("taskq.dashboard")

TRANSITIONS_KEPT = 50


class UnknownAlert(LookupError):
    """A silence names no rule of this dashboard."""


class Alerting:
    """Rules, silences, the alert history and the webhooks (see the module doc)."""

    def __init__(self, settings: DashboardSettings, prefix: str) -> None:
        self.alerts = Alerts(settings.alerts.rules)
        self.silences = Silences()
        self.transitions: list[Transition] = []
        source = socket.gethostname()
        self.webhooks = [Webhook(t, prefix, source) for t in settings.alerts.targets()]
        path = settings.alerts_file
        self.rules_file = RulesFile(path, settings.alert_flags) if path is not None else None
        self.rules_error: str | None = None

    # -- at each reading ---------------------------------------------------------------------

    def evaluate(self, reading: Reading) -> None:
        """Apply the rules to ``reading``, record what changed, tell the webhooks."""
        self._record(self.alerts.evaluate(reading))
        self._notify(reading.time)

    def _record(self, changes: list[Transition]) -> None:
        for change in changes:
            log.warning("alert %s: %s", change.status, change.alert.message)
        if changes:
            self.transitions = (changes[::-1] + self.transitions)[:TRANSITIONS_KEPT]

    def _notify(self, now: float) -> None:
        sends = self.silences.notifications(keyed(self.alerts.active()), now)
        for webhook in self.webhooks:
            webhook.send(sends)

    def read_rules(self) -> list[Rule] | str | None:
        """The rules of the file if it changed since the last look (blocking file I/O: call
        it in a thread); the error's text if it cannot be used; None if it did not change."""
        if self.rules_file is None or not self.rules_file.changed():
            return None
        try:
            return self.rules_file.rules()
        except ConfigurationError as exc:
            return str(exc)

    def use_rules(self, read: list[Rule] | str, now: float) -> None:
        """Apply what :meth:`read_rules` read: new rules (the alerts of the others resolve),
        or an error (the rules stay as they were)."""
        path = self.rules_file.path if self.rules_file else None
        if isinstance(read, str):
            self.rules_error = f"{read} (the rules in force are those read before)"
            log.error("alert rules of %s not reloaded: %s", path, self.rules_error)
            return
        self.rules_error = None
        self._record(self.alerts.reload(read, now))
        self._notify(now)
        log.info("alert rules reloaded from %s: %d rule(s)", path, len(read))

    # -- silences ----------------------------------------------------------------------------

    def silence(self, key: str, minutes: float, now: float) -> float:
        """Silence ``key`` (an alert's key or a rule's ID) for ``minutes`` (0: lift it);
        return until when. UnknownAlert if ``key`` names no rule; ValueError if ``minutes``
        is out of range."""
        if not 0 <= minutes <= MAX_MINUTES:
            raise ValueError(f"minutes must be from 0 to {MAX_MINUTES:g}")
        if not any(covers(rule, key) for rule, _ in self.alerts.rule_ids()):
            raise UnknownAlert(f"no alert rule of this dashboard has the key {key!r}")
        until = now + minutes * 60.0
        self.silences.silence(key, until)
        self._notify(now)  # a lifted silence sends what it held back at once
        if minutes:
            log.info("alert %s silenced for %g minute(s)", key, minutes)
        else:
            log.info("alert %s: silence lifted", key)
        return until

    # -- state and views ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What to remember across a restart, as JSON-ready data."""
        return {"alerts": self.alerts.state(),
                "transitions": [t.as_json() for t in self.transitions],
                "silences": self.silences.state()}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a :meth:`state`."""
        self.alerts.restore(state["alerts"])
        self.transitions = [Transition.of_json(t) for t in state["transitions"]]
        self.silences.restore(state.get("silences"), keyed(self.alerts.active()))

    def view(self, now: float) -> dict[str, Any]:
        """What the pages and ``/api/alerts`` show: the alerts firing (with until when each
        is silenced), the latest changes, the silences, the rules and a rules file's error."""
        return {
            "alerts": [shown(a, self.silences, now) for a in self.alerts.active()],
            "transitions": [t.as_json() for t in self.transitions],
            "silences": [
                {"key": k, "until": t} for k, t in sorted(self.silences.active(now).items())
            ],
            "rules": [
                {"id": rule_id, **rule.model_dump(by_alias=True, exclude_none=True)}
                for rule_id, rule in self.alerts.rule_ids()
            ],
            "rules_error": self.rules_error,
        }

    def counters(self) -> dict[str, int]:
        """The webhooks' counters (for /metrics)."""
        return {"webhook_sent": sum(w.sent for w in self.webhooks),
                "webhook_failures": sum(w.failures for w in self.webhooks)}  # fmt: skip
