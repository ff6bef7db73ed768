"""The dashboard's settings: where it listens, who may see it, its history and alert rules.

Alert rules come from a TOML file (``--alerts FILE``), and CLI flags add to them::

    webhook = "http://127.0.0.1:9000/alerts"   # POSTed a JSON object per change

    [[webhooks]]            # more receivers, each with its payload's shape
    url = "https://hooks.slack.com/services/..."
    format = "slack"        # generic (the default) | slack | pagerduty

    [[webhooks]]
    url = "https://events.pagerduty.com/v2/enqueue"
    format = "pagerduty"
    routing_key = "..."     # the integration key of a PagerDuty service
    severity = "error"      # critical | error | warning | info

    [[rule]]
    kind = "backlog"        # backlog | dead-letters | no-consumer | failure-rate | worker-missing
    queue = "emails"        # a work queue's short name, or "*" (the default)
    ready = 1000
    for = 60                # seconds the condition must hold

    [[rule]]
    kind = "failure-rate"
    percent = 5
    window = 300
    min_tasks = 20
    task = "send_email"     # optional: only this task ("*": each task on its own); likewise queue

``webhook`` may also be a table like those of ``webhooks``. Unknown keys or kinds fail loudly
(ConfigurationError), like every taskq setting. The dashboard re-reads the file when it
changes (:class:`RulesFile`): its rules apply without a restart.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ..exceptions import ConfigurationError
from ..redact import redact_url
from .alerts import Rule
from .paths import public_origin, root_path
from .payloads import Format, Severity

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class WebhookSettings(BaseModel):
    """A receiver of alert changes: its URL and the shape of what it is POSTed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    format: Format = "generic"
    routing_key: SecretStr | None = None
    """PagerDuty's integration key (``pagerduty`` only, and needed there)."""
    severity: Severity = "error"
    """The severity of a PagerDuty event."""

    @model_validator(mode="after")
    def _routing_key(self) -> WebhookSettings:
        if self.format == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty webhook needs its routing_key")
        return self


class AlertSettings(BaseModel):
    """The alert rules and where to POST their changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    webhook: WebhookSettings | None = None
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list, alias="rule")

    @field_validator("webhook", mode="before")
    @classmethod
    def _generic(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    def targets(self) -> list[WebhookSettings]:
        """Every receiver: ``webhook`` then ``webhooks``."""
        return [*([self.webhook] if self.webhook else []), *self.webhooks]


def _invalid(exc: ValidationError) -> str:
    """A validation error's lines without the values given (a routing key is a secret)."""
    lines = [f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()]
    return redact_url("; ".join(lines))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read alert rules from {path}: {exc}") from exc


def load_alerts(
    path: Path | None, flags: list[dict[str, Any]], webhook: str | dict[str, Any] | None
) -> AlertSettings:
    """The rules of the TOML file at ``path`` (if any) plus the rules given as flags; a
    ``webhook`` flag (a URL, or a table like the file's) wins over the file's ``webhook``.
    ConfigurationError if anything is invalid."""
    data = _read(path) if path is not None else {}
    data["rule"] = [*data.get("rule", []), *flags]
    if webhook:
        data["webhook"] = webhook
    try:
        return AlertSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid alert rules: {_invalid(exc)}") from None


def parse_rules(tables: list[dict[str, Any]]) -> tuple[Rule, ...]:
    """Rule tables (the flags' rules) as rules; ConfigurationError if one is invalid."""
    try:
        return tuple(TypeAdapter(list[Rule]).validate_python(tables))
    except ValidationError as exc:
        raise ConfigurationError(f"invalid alert rules: {_invalid(exc)}") from None


class RulesFile:
    """The alert rules of a TOML file, re-read when it changes: :meth:`changed` says whether
    it did since the last look, :meth:`rules` reads it (its rules, then ``extra``, the
    flags'). Blocking (file I/O): call it in a thread."""

    def __init__(self, path: Path, extra: tuple[Rule, ...] = ()) -> None:
        self.path = path
        self.extra = extra
        self._seen = self._version()

    def _version(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size, found.st_ino

    def changed(self) -> bool:
        """Whether the file changed (or appeared, or went away) since the last call."""
        version = self._version()
        if version == self._seen:
            return False
        self._seen = version
        return True

    def rules(self) -> list[Rule]:
        """Its rules and the extra ones; ConfigurationError if it cannot be read or is invalid
        (its webhooks are read at the start only: changing them needs a restart)."""
        return [*load_alerts(self.path, [], None).rules, *self.extra]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (only this machine can connect)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse (ConfigurationError) to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"refusing to listen on {host} without --token: anyone who can reach it could "
            "replay and purge dead letters and stop workers. Pass --token (or set "
            "TASKQ_DASHBOARD_TOKEN), or listen on 127.0.0.1."
        )


@dataclasses.dataclass(frozen=True, slots=True)
class DashboardSettings:
    """Everything the dashboard needs to know besides the App."""

    host: str = "127.0.0.1"
    port: int = 5555
    token: str | None = None
    viewer_token: str | None = None
    """A second token that sees everything and acts on nothing (``token`` is the operator's)."""
    history_path: Path = Path("taskq-dashboard.sqlite3")
    history_max_age: float = 7 * 86400.0
    history_max_tasks: int = 100_000
    history_failures_max_age: float = 30 * 86400.0
    history_max_failures: int = 100_000
    sample_interval: float = 2.0
    chart_seconds: float = 600.0
    queues: tuple[str, ...] = ()
    management_url: str | None = None
    use_management: bool = True
    alerts: AlertSettings = dataclasses.field(default_factory=AlertSettings)
    root_path: str = ""
    """The prefix a reverse proxy serves the dashboard under and strips (``/taskq``; see
    :mod:`.paths`): every address the dashboard writes carries it."""
    public_origin: str | None = None
    """The origin browsers reach the dashboard at through a proxy that rewrites ``Host``
    (``https://ops.example.com``): trusted in a POST's ``Origin`` (see :mod:`.security`)."""
    alerts_file: Path | None = None
    """The TOML file of ``alerts`` (re-read when it changes), if they come from one."""
    alert_flags: tuple[Rule, ...] = ()
    """The rules given as flags, added to the file's."""

    def __post_init__(self) -> None:
        check_exposure(self.host, self.token)
        object.__setattr__(self, "root_path", root_path(self.root_path))
        object.__setattr__(self, "public_origin", public_origin(self.public_origin))
        if self.viewer_token and (not self.token or self.viewer_token == self.token):
            raise ConfigurationError(
                "--viewer-token needs --token, a different one: the operator's (the viewer's "
                "only reads)"
            )
        if self.sample_interval <= 0 or self.chart_seconds < self.sample_interval:
            raise ConfigurationError("sample interval must be > 0 and below the chart span")

    @property
    def history_points(self) -> int:
        """Readings kept per queue for the rate charts."""
        return max(2, int(self.chart_seconds / self.sample_interval))
