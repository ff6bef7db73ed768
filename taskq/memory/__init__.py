"""The in-process mode: ``App(broker="memory://")`` runs tasks with no broker, for unit tests.

The App, the Worker, the result store and the hooks are the real ones; only the transport
is replaced by :class:`~taskq.memory.transport.MemoryTransport`, over a
:class:`~taskq.memory.broker.MemoryBroker` that lives as long as the running event loop (see
:mod:`taskq.memory.broker` for what it does and does not simulate). Opening a ``memory://``
App starts a Worker beside it on the same loop (:mod:`taskq.memory.inprocess`;
``?worker=false`` leaves that to the test), so ``await (await add.delay(1, 2)).result()``
just works. Results use the App's store as usual (the AMQP store flows over in-memory reply
queues). Tests inspect the broker with :mod:`taskq.testing.memory`.
See docs/guide/testing.md.

This package's ``__init__`` imports only the pure URL parsing: Settings use it.
"""

from .url import MemoryUrl, is_memory_url, parse_memory_url

__all__ = ["MemoryUrl", "is_memory_url", "parse_memory_url"]
