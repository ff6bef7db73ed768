"""Integrations with other tools, each a hook behind an extra: ``taskq.integrations.otel``
(``taskq[otel]``) and ``taskq.integrations.sentry`` (``taskq[sentry]``). Import the one you
use: importing this package imports neither."""
