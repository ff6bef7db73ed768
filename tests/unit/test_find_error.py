"""``taskq.exceptions.find_error``: a known taskq error, found in nested exception groups."""

from __future__ import annotations

from taskq.exceptions import BrokerUnavailable, ConfigurationError, TopologyMismatch, find_error

KINDS = (BrokerUnavailable, ConfigurationError)


def test_the_error_itself() -> None:
    error = ConfigurationError("name in use")
    assert find_error(error, KINDS) is error


def test_in_nested_groups() -> None:
    error = BrokerUnavailable("refused")
    group = ExceptionGroup("outer", [RuntimeError("other"), ExceptionGroup("inner", [error])])
    assert find_error(group, KINDS) is error


def test_none_of_the_kinds() -> None:
    group = ExceptionGroup("outer", [RuntimeError("other"), TopologyMismatch("args")])
    assert find_error(group, KINDS) is None
    assert find_error(ValueError("plain"), KINDS) is None
