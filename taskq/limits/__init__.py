"""Limits enforced across the whole fleet through RabbitMQ alone (docs/guide/rate-limits.md).

- :mod:`.rate`: ``@app.task(rate_limit="100/s")``: how often a task may start;
- :mod:`.concurrency`: ``@app.task(concurrency_limit=5, concurrency_key=...)``: how many run
  at once per key;
- :mod:`.gate`: what a worker asks before a limited task starts;
- :mod:`.changes`: changing limits at runtime (``taskq control rate-limit``).
"""

from .changes import LimitChange, change_limits, publish_change
from .concurrency import ConcurrencyLimit
from .gate import Gate, Limits
from .rate import Limiter, RateLimit

__all__ = [
    "ConcurrencyLimit",
    "Gate",
    "LimitChange",
    "Limiter",
    "Limits",
    "RateLimit",
    "change_limits",
    "publish_change",
]
