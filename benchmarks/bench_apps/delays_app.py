"""taskq app of ``benchmarks.delays --worker-process``: a no-op that stamps its start, and its
own due time (one file per process in ``$BENCH_STAMPS``, see stamps)."""

from __future__ import annotations

from taskq import App, Hook, current
from taskq.exceptions import DecodeError
from taskq.message import envelope_of
from taskq.transport import Delivery

from .stamps import stamp


class EtaOfEach(Hook):
    """Notes the ETA of every delivery, by task ID: its own due time (the sender's clock
    when it built the message, plus the countdown)."""

    def __init__(self, etas: dict[str, float]) -> None:
        self.etas = etas

    def on_received(self, delivery: Delivery) -> None:
        try:
            eta = envelope_of(delivery).eta
        except DecodeError:
            return
        if eta is not None and delivery.message_id is not None:
            self.etas[delivery.message_id] = eta.timestamp()


app = App("bench-delays")
_etas: dict[str, float] = {}
app.add_hook(EtaOfEach(_etas))


@app.task(ignore_result=True)
async def noop(i: int) -> None:
    stamp("s", str(i))
    eta = _etas.pop(current().task_id, None)
    if eta is not None:
        stamp("d", f"{i}:{eta:.6f}")
