"""The ``memory://`` broker URL: which in-process broker, and how it behaves. Pure.

``memory://`` (or ``memory://NAME``: brokers of other names are separate) takes two query
parameters, each ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``):

- ``worker`` (default true): opening the App starts an in-process Worker on its queues, and
  closing it stops that worker (gracefully) first; false leaves running a worker to the test.
- ``instant_delays`` (default false): countdowns, ETAs and retry backoff take no time instead
  of being waited out on the event loop's clock.

Any other parameter is refused: a misspelt ``instant_delay=1`` must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from ..exceptions import ConfigurationError

SCHEME = "memory"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PARAMETERS = ("worker", "instant_delays")


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryUrl:
    """A parsed ``memory://`` URL."""

    name: str = ""
    """Which in-process broker (of the running event loop): ``memory://a`` and
    ``memory://b`` share nothing."""
    worker: bool = True
    """Whether opening the App starts an in-process worker."""
    instant_delays: bool = False
    """Whether delays (countdown, ETA, retry backoff) are skipped."""


def is_memory_url(url: str) -> bool:
    """Whether a broker setting names the in-process broker."""
    return url.strip().lower().startswith(SCHEME + "://")


def parse_memory_url(url: str) -> MemoryUrl:
    """The MemoryUrl of ``url``; ConfigurationError for another scheme, a path, several
    URLs, or a parameter that is unknown or not a boolean."""
    if "," in url:
        raise ConfigurationError("broker: memory:// is one in-process broker, not a cluster")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() != SCHEME:
        raise ConfigurationError(f"broker: {url!r} is not a memory:// URL")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"broker: {url!r}: a memory:// URL has a name, not a path")
    flags: dict[str, bool] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMETERS:
            raise ConfigurationError(
                f"broker: unknown memory:// parameter {key!r} (known: {', '.join(_PARAMETERS)})"
            )
        flags[key] = _flag(key, value)
    return MemoryUrl(name=parts.netloc, **flags)


def _flag(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"broker: memory:// parameter {key}={value!r} is not true or false")
