"""Limits enforced across the whole fleet through RabbitMQ alone (docs/guide/rate-limits.md).

- :mod:`.rate`: ``@app.task(rate_limit="100/s")``: how often a task may start.
"""

from .rate import Limiter, RateLimit

__all__ = ["Limiter", "RateLimit"]
