"""Helpers for testing taskq applications and extensions.

- :mod:`taskq.testing.contract`: the result-store contract, to run against your own store.
- :mod:`taskq.testing.polling`: ``eventually``, polling with a deadline.
"""
