"""Helpers for testing taskq applications and extensions.

- :mod:`taskq.testing.pytest_plugin`: the ``taskq_*`` pytest fixtures (registered through the
  ``taskq.testing`` entry point; see docs/guide/testing.md).
- :mod:`taskq.testing.polling`: ``eventually``, polling with a deadline, and ``outcome``, a
  task's result with a deadline that says where the task was.
- :mod:`taskq.testing.worker`: ``running``, an in-process Worker for the length of a block.
- :mod:`taskq.testing.isolation`: throwaway prefixes and deleting what was declared under one.
- :mod:`taskq.testing.contract`: the result-store contract, to run against your own store.
"""
