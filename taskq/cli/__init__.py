"""Command-line entry points: ``taskq-worker`` and ``taskq``."""
