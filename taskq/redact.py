"""Keep credentials out of reprs and log lines."""

from __future__ import annotations

import inspect
import logging
import re
import reprlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

# scheme://user:password@host -> scheme://user:***@host; also catches URLs inside longer text.
_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@"
)


def redact_url(text: str) -> str:
    """Return ``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


ARGS_WIDTH = 80
# Keyword arguments whose value is never shown (inspect active, events, the dashboard).
SECRET_NAMES = re.compile(r"pass(word|wd)?|secret|token|api_?key|credential|auth", re.I)


class _Shown(reprlib.Repr):
    """reprlib stops at a few items per container and cuts long strings, so a huge argument
    costs no more to show than a small one. Strings are redacted before they are cut: a cut
    URL would no longer be recognised as one."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 200
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 20
        self.maxlevel = 4

    def repr_str(self, x: str, level: int) -> str:
        return super().repr_str(redact_url(x), level)


_SHOWN = _Shown()


def value_repr(value: Any, width: int = ARGS_WIDTH) -> str:
    """A short repr of ``value`` for display: bounded in cost, cut to ``width`` characters,
    URL passwords redacted."""
    return _cut(redact_url(_SHOWN.repr(value)), width)


def call_repr(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    width: int = ARGS_WIDTH,
    signature: inspect.Signature | None = None,
) -> str:
    """``args`` and ``kwargs`` as call arguments (``1, 'x', key=2``), like :func:`value_repr`;
    the value of an argument named like a secret (``password``, ``token``...) is shown as
    ``'***'``. Keyword arguments are named by their keyword; positional ones only through
    ``signature``, the function's. Without it a positional argument cannot be told from a
    secret (a sender binds ``login("bob", password="hunter2")`` to positions), so every
    positional value is shown as ``'***'``."""
    names = _positional_names(signature)
    parts = ["'***'" if _is_secret(next(names, None)) else _SHOWN.repr(a) for a in args] + [
        f"{k}='***'" if _is_secret(k) else f"{k}={_SHOWN.repr(v)}" for k, v in kwargs.items()
    ]
    return _cut(redact_url(", ".join(parts)), width)


def _is_secret(name: str | None) -> bool:
    return name is not None and SECRET_NAMES.search(name) is not None


def _positional_names(signature: inspect.Signature | None) -> Iterator[str]:
    """The names positional arguments bind to, in order: a ``*args`` parameter names all the
    rest."""
    if signature is None:
        while True:
            yield "password"  # unknown: hidden like a secret
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            yield param.name
        elif param.kind is param.VAR_POSITIONAL:
            while True:
                yield param.name


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


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


def install_log_redaction(*handlers: logging.Handler) -> None:
    """Redact URL passwords in what taskq and redis-py log: add a redacting filter to
    ``handlers``, and to the loggers under ``taskq`` and ``redis``.

    Importing taskq changes no logging: taskq's commands (``taskq-worker``, ``taskq``, the
    dashboard and beat) call this when they set up their logs; a program that embeds taskq
    calls it once its own logging is configured. The filter formats each record's message
    and redacts it in place (``record.args`` becomes None), so handlers see the redacted
    text. A filter on a logger applies only to records logged on that very logger, so it goes
    on every logger that exists under ``taskq`` and ``redis`` at the time of the call (they are
    created when their modules are imported). Calling it again adds no second filter.
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
