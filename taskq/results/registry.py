"""Which result store a ``results`` setting names: a scheme maps to a factory.

``results="amqp"`` is the default store; a URL's scheme picks the factory (``redis://``,
``rediss://`` and ``unix://`` the Redis store, ``postgresql://`` and ``postgres://`` the
PostgreSQL store). Another package adds a store for its own scheme either in code::

    register_store("mystore", lambda request: MyStore(request.url))

or, without any import by the user, by an entry point in its ``pyproject.toml``::

    [project.entry-points."taskq.result_stores"]
    mystore = "mypackage.store:make_store"

Entry points are read only when a setting names a scheme nobody registered (so an App
that uses a built-in store never scans the installed packages). A built-in store whose extra
is missing raises ConfigurationError naming the extra when it is made (see taskq.extras).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..exceptions import ConfigurationError
from ..redact import redact_url
from .amqp import AmqpResultStore
from .base import ResultStore
from .shared import SharedStore

if TYPE_CHECKING:
    from ..settings import Settings
    from ..transport import Transport

log = logging.getLogger("taskq.results")

ENTRY_POINT_GROUP = "taskq.result_stores"
"""The entry point group in which packages register store factories by scheme."""


@dataclasses.dataclass(frozen=True, slots=True)
class StoreRequest:
    """What a store factory gets: the ``results`` setting and what the store may use."""

    url: str
    """The ``results`` setting (``"amqp"`` or a URL), passwords included: never log it as
    is (taskq.redact.redact_url hides them)."""
    transport: Transport
    """The connected transport of the App or worker that opens the store."""
    concurrency: int | None
    """The worker's concurrency (sizes a connection pool), or None for a client."""
    settings: Settings
    """The settings of the App or worker (``result_ttl``, ``connect_timeout``, ...)."""


StoreFactory = Callable[[StoreRequest], ResultStore]
"""Makes an unopened store from a request (the caller opens and closes it)."""


def _amqp(request: StoreRequest) -> ResultStore:
    if request.url != "amqp":  # the AMQP store uses the broker's connection: it has no URL
        raise ConfigurationError(
            f"unknown result store {redact_url(request.url)!r}: the AMQP store is "
            "results='amqp' (it uses the broker connection)"
        )
    return AmqpResultStore(request.transport, reply_queue_ttl=request.settings.reply_queue_ttl)


def _redis(request: StoreRequest) -> ResultStore:
    from .redis import RedisResultStore

    return RedisResultStore(request.url, request.transport, result_ttl=request.settings.result_ttl)


def _postgres(request: StoreRequest) -> ResultStore:
    from .postgres import PostgresResultStore, pool_size
    from .postgres_schema import Tables

    settings = request.settings
    return PostgresResultStore(
        request.url,
        table=Tables.for_prefix(settings.prefix).name,
        pool_size=pool_size(request.concurrency),
        result_ttl=settings.result_ttl,
        connect_timeout=settings.connect_timeout,
    )


_FACTORIES: dict[str, StoreFactory] = {
    "amqp": _amqp,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "postgresql": _postgres,
    "postgres": _postgres,
}


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make ``results="{scheme}://..."`` build its store with ``factory`` (replacing what
    the scheme had). ConfigurationError for a scheme that is not lower-case letters, digits,
    ``+``, ``-`` or ``.`` starting with a letter (what a URL scheme may be)."""
    if not (scheme[:1].isalpha() and scheme.isascii() and scheme == scheme.lower()) or not all(
        c.isalnum() or c in "+-." for c in scheme
    ):
        raise ConfigurationError(f"{scheme!r} is not a URL scheme (e.g. 'mystore')")
    _FACTORIES[scheme] = factory


def known_schemes() -> list[str]:
    """The schemes that have a factory now, sorted (entry points not yet loaded excluded)."""
    return sorted(_FACTORIES)


def scheme_of(spec: str) -> str:
    """The scheme of a ``results`` setting: the part before ``://``, or all of ``amqp``."""
    scheme, sep, _ = spec.partition("://")
    return scheme if sep else spec


async def open_store(
    settings: Settings,
    transport: Transport,
    concurrency: int | None,
    shared: SharedStore | None,
) -> ResultStore:
    """An open store: a lease of ``shared`` (a store object the App was given), else a new
    one for the ``results`` setting (see ``make_store``)."""
    store = (
        shared.lease()
        if shared is not None
        else make_store(settings.results, transport, concurrency, settings=settings)
    )
    await store.open()
    return store


def make_store(
    spec: str, transport: Transport, concurrency: int | None = None, *, settings: Settings
) -> ResultStore:
    """A new, unopened store for the ``results`` setting ``spec``, for an App or worker
    with ``settings``.

    ConfigurationError for an unknown scheme (listing the known ones), a built-in store
    whose extra is missing, or a factory that returns something that is not a ResultStore.
    """
    scheme = scheme_of(spec)
    factory = _FACTORIES.get(scheme) or _from_entry_points(scheme)
    if factory is None:
        raise ConfigurationError(
            f"unknown result store {redact_url(spec)!r}: use 'amqp' or a URL of a known "
            f"scheme ({', '.join(s + '://' for s in known_schemes() if s != 'amqp')}), "
            f"register a factory for its scheme (taskq.results.registry.register_store or an "
            f"entry point in group {ENTRY_POINT_GROUP!r}), or pass a ResultStore object as "
            "App(results=...)"
        )
    return check_store(factory(StoreRequest(spec, transport, concurrency, settings)))


def _from_entry_points(scheme: str) -> StoreFactory | None:
    """The factory an installed package registers for ``scheme`` (then kept), or None."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        try:
            factory = entry.load()
        except Exception as exc:
            raise ConfigurationError(
                f"the result store entry point {entry.name!r} ({entry.value}) failed to load: "
                f"{exc!r}"
            ) from exc
        if not callable(factory):
            raise ConfigurationError(
                f"the result store entry point {entry.name!r} ({entry.value}) is not callable"
            )
        log.debug("result store scheme %r from entry point %s", scheme, entry.value)
        register_store(scheme, factory)
        return factory  # type: ignore[no-any-return]
    return None


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The public members a class must have to implement ``protocol``, in declaration order:
    its annotated attributes, then its methods (what ``typing.get_protocol_members`` of
    Python 3.13 gives, on 3.11 too)."""
    names: dict[str, None] = {}
    for cls in reversed(protocol.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False) or cls is Protocol:
            continue
        names.update(dict.fromkeys(inspect.get_annotations(cls)))
        names.update(dict.fromkeys(k for k, v in vars(cls).items() if callable(v)))
    return tuple(name for name in names if not name.startswith("_"))


RESULT_STORE_MEMBERS = protocol_members(ResultStore)
"""What a result store object must have (from the ResultStore protocol)."""


def check_store(store: object) -> ResultStore:
    """``store`` if it implements the ResultStore protocol, else ConfigurationError naming
    the members it lacks."""
    missing = [member for member in RESULT_STORE_MEMBERS if not hasattr(store, member)]
    if missing or not isinstance(store, ResultStore):
        raise ConfigurationError(
            f"results={store!r} is not a result store: it lacks {', '.join(missing)} (see "
            "taskq.ResultStore)"
        )
    return store
