"""taskq app of ``benchmarks.delays --worker-process``: a no-op that stamps its start and its
own due time (one file per process in ``$BENCH_STAMPS``, see stamps)."""

from __future__ import annotations

from taskq import App, Hook, current, delays
from taskq.exceptions import DecodeError
from taskq.message import envelope_of
from taskq.transport import Delivery

from .stamps import stamp


class EtaOfEach(Hook):
    """Notes the due time of every delivery, by task ID: the ``x-taskq-due`` header of a held
    message (read without decoding the message again: the measurement must not slow the
    worker it measures), else the message's ETA."""

    def __init__(self, etas: dict[str, float]) -> None:
        self.etas = etas

    def on_received(self, delivery: Delivery) -> None:
        if delivery.message_id is None:
            return
        due = delays.due_of(delivery.headers)
        if due is None:  # not through a hold queue (the levels alone, --no-hold)
            try:
                eta = envelope_of(delivery).eta
            except DecodeError:
                return
            due = None if eta is None else eta.timestamp()
        if due is not None:
            self.etas[delivery.message_id] = due


app = App("bench-delays")
_etas: dict[str, float] = {}
app.add_hook(EtaOfEach(_etas))


@app.task(ignore_result=True)
async def noop(i: int) -> None:
    eta = _etas.pop(current().task_id, None)
    stamp("s", str(i) if eta is None else f"{i}:{eta:.3f}", buffered=True)
