"""taskq.tracebacks formats as the standard library does, less the caret lines, and reuses
what it formatted for a code location."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable

import pytest

from taskq import tracebacks
from taskq.outcome import error_info

_CARETS = re.compile(r"^\s*[~^]+\s*$")


def standard(exc: BaseException) -> str:
    """The standard library's text, without its caret lines."""
    lines = "".join(traceback.format_exception(exc)).splitlines(keepends=True)
    return "".join(line for line in lines if not _CARETS.match(line))


def raised(make: Callable[[], object]) -> BaseException:
    try:
        make()
    except BaseException as exc:  # what was raised is what is compared
        return exc
    raise AssertionError("nothing was raised")


def divide(x: int) -> float:
    return 1 / x + (x * 2)  # an expression the carets would mark


def nested() -> None:
    divide(0)


def caused() -> None:
    try:
        nested()
    except ZeroDivisionError as exc:
        raise ValueError("bad input") from exc


def during() -> None:
    try:
        {}["missing"]
    except KeyError:
        raise RuntimeError("while handling")  # noqa: B904 - the context is what is tested


def suppressed() -> None:
    try:
        {}["missing"]
    except KeyError:
        raise LookupError("no context") from None


def noted() -> None:
    exc = ValueError("with a note")
    exc.add_note("a note for the reader")
    raise exc


def recurse(n: int) -> int:
    return 1 / 0 if n == 0 else recurse(n - 1)


def grouped() -> None:
    raise ExceptionGroup("two", [ValueError("a"), TypeError("b")])


def multiline_message() -> None:
    raise ValueError("line one\nline two")


@pytest.mark.parametrize(
    "make",
    [nested, caused, during, suppressed, noted, lambda: recurse(30), grouped, multiline_message],
    ids=["nested", "cause", "context", "suppressed", "note", "recursion", "group", "lines"],
)
def test_the_text_is_the_standard_one_without_carets(make: Callable[[], object]) -> None:
    exc = raised(make)
    assert tracebacks.format_exception(exc) == standard(exc)
    assert tracebacks.format_exception(exc) == standard(exc)  # the second time from the cache


def test_an_exception_never_raised_has_no_frames() -> None:
    exc = ValueError("made, not raised")
    assert tracebacks.format_exception(exc) == "ValueError: made, not raised\n"


def test_a_cycle_of_contexts_ends() -> None:
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    text = tracebacks.format_exception(first)
    assert text.count("ValueError: first") == 1 and text.count("ValueError: second") == 1


def test_one_location_is_formatted_once() -> None:
    tracebacks._frames.clear()
    texts = {error_info(raised(nested)).traceback for _ in range(50)}
    assert len(texts) == 1
    # raised, nested, divide: each location formatted once for the 50 failures
    assert len(tracebacks._frames) == 3
