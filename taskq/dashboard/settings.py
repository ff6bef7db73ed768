"""The dashboard's settings: where it listens, who may see it, its history and alert rules.

Alert rules come from a TOML file (``--alerts FILE``), and CLI flags add to them::

    webhook = "http://127.0.0.1:9000/alerts"   # POSTed a JSON object per change

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

Unknown keys or kinds fail loudly (ConfigurationError), like every taskq setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import ConfigurationError
from ..redact import redact_url
from .alerts import Rule
from .paths import public_origin, root_path

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class AlertSettings(BaseModel):
    """The alert rules and where to POST their changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    webhook: str | None = None
    rules: list[Rule] = Field(default_factory=list, alias="rule")


def load_alerts(
    path: Path | None, flags: list[dict[str, Any]], webhook: str | None
) -> AlertSettings:
    """The rules of the TOML file at ``path`` (if any) plus the rules given as flags; a
    ``webhook`` flag wins over the file's. ConfigurationError if anything is invalid."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read alert rules from {path}: {exc}") from exc
    data["rule"] = [*data.get("rule", []), *flags]
    if webhook:
        data["webhook"] = webhook
    try:
        return AlertSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid alert rules: {redact_url(str(exc))}") from None


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
