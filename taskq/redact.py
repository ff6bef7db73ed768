"""Keep credentials out of reprs and log lines."""

from __future__ import annotations

import logging
import re

# scheme://user:password@host -> scheme://user:***@host; also catches URLs inside longer text.
_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@"
)


def redact_url(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL passwords in the final message of every record, and
    in its traceback (an exception's cause may print a URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # Formatted once here: formatters reuse it. Most lines hold no URL: skip the regex.
        record.msg, record.args = (redact_url(message) if "://" in message else message), None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set, so the redacted text is what is shown.
            record.exc_text = redact_url(_TRACEBACKS.formatException(record.exc_info))
        return True


def install_redaction(*handlers: logging.Handler) -> None:
    """Add the redacting filter to ``handlers``, and to the loggers of taskq and its AMQP stack.

    A filter on a logger applies only to records logged on that very logger, so it goes on
    every existing logger under ``taskq`` and ``redis`` (they are created when their modules are
    imported, before this runs).
    """
    flt = RedactingFilter()
    for handler in handlers:
        handler.addFilter(flt)
    roots = ("taskq", "redis")
    names = [
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name in roots or name.startswith(tuple(f"{root}." for root in roots))
    ]
    for name in {*roots, *names}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
