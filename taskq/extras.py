"""The optional dependencies, by extra: a missing one is a ConfigurationError naming the extra.

``pip install taskq`` brings only what every App needs; a result store, the metrics and the
dashboard need more (``pip install 'taskq[redis]'``). The code that needs an extra calls
:func:`require_extra` before it imports the extra's modules, so a user who forgot one reads
which extra to install instead of a ``ModuleNotFoundError`` from deep inside taskq.
"""

from __future__ import annotations

import importlib

from .exceptions import ConfigurationError

EXTRAS: dict[str, tuple[str, ...]] = {
    "redis": ("redis", "hiredis"),
    "postgres": ("asyncpg",),
    "metrics": ("prometheus_client",),
    "dashboard": ("starlette", "uvicorn", "jinja2"),
    "otel": ("opentelemetry.trace", "opentelemetry.propagate"),
    "sentry": ("sentry_sdk",),
    "aio-pika": ("aio_pika",),
}
"""Each extra of pyproject.toml that code imports, and the modules it provides."""

DISTRIBUTIONS = {
    "prometheus_client": "prometheus-client",
    "opentelemetry.trace": "opentelemetry-api",
    "opentelemetry.propagate": "opentelemetry-api",
    "sentry_sdk": "sentry-sdk",
    "aio_pika": "aio-pika",
}
"""Module names whose package on the index has another name."""


def require_extra(extra: str, needed_by: str) -> None:
    """Import every module of ``extra``; ConfigurationError naming the extra if one is missing.

    ``needed_by`` says what needs it, for the message: ``"the Redis result store"``.
    """
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            package = DISTRIBUTIONS.get(module, module)
            raise ConfigurationError(
                f"{needed_by} needs {package}, which is not installed: pip install 'taskq[{extra}]'"
            ) from None
