"""Objects that live as long as the running event loop: the in-process brokers of one test,
found again by name by every App and Worker of that loop.

An App's client and its worker each build their own transport (``App.connect``):
they meet here, as processes meet at a RabbitMQ server. Keyed by the loop (weakly), so each
test, which pytest-asyncio gives a loop of its own, starts from empty brokers, and nothing
outlives the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_scopes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def of_running_loop(kind: str, name: str, make: Callable[[], T]) -> T:
    """The ``kind`` object called ``name`` of the running loop, made by ``make`` at the first
    call. RuntimeError outside a running loop."""
    scope = _scopes.setdefault(asyncio.get_running_loop(), {})
    key = (kind, name)
    if key not in scope:
        scope[key] = make()
    return scope[key]  # type: ignore[no-any-return]
