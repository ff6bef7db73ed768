"""The fault suite: ``python -m benchmarks.faults`` (issue 9, item 6).

It runs taskq against the real broker (``TASKQ_BROKER``, default
amqp://guest:guest@127.0.0.1:5672/, acted on with ``rabbitmqctl`` on the local node) with real
``taskq-worker`` processes, injects one kind of fault per scenario, and counts, for every task
whose send was confirmed:

- executed: its body ran to the end at least once (from the execution ledger, written by the
  tasks themselves outside taskq: see ``ledger``);
- lost: confirmed but never executed;
- executed twice: executed more than once, against the deliveries that were in flight at the
  faults (prefetch x live workers, per fault);
- recorded twice: its result recorded more than once (Redis: the store's ``terminal_writes``
  field; AMQP: terminal replies the client received, counted by tapping its reply stream);
- callers without a result, and callers with a wrong error, among the callers that awaited
  ``handle.result()`` through the fault.

Scenarios (each under its own random prefix, cleaned up at the end): ``kill-storm``,
``multi-queue``, ``connection-drop``, ``broker-restart``, ``store-outage``, ``poison``,
``producer-fuzz``, ``node-kill`` (on the test cluster), ``chord`` (issue 22).
Every process it starts (workers, redis-server) is stopped and the broker is always started
again, whatever happens.
"""
