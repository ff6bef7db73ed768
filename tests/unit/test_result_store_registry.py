"""Result stores are picked by scheme from a registry, and found by entry point."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol

import pytest

from examples.custom_store.memory_store import MemoryStore
from taskq import App, ConfigurationError, ResultStore
from taskq.results import registry
from taskq.results.amqp import AmqpResultStore
from taskq.results.registry import (
    ENTRY_POINT_GROUP,
    RESULT_STORE_MEMBERS,
    StoreRequest,
    known_schemes,
    make_store,
    protocol_members,
    register_store,
)
from taskq.transport import Transport, make_transport

UNREACHABLE = "amqp://guest:guest@192.0.2.1:1/"
SETTINGS = App("unit", broker=UNREACHABLE, result_ttl=42).settings
MADE: list[StoreRequest] = []


def make_recorded(request: StoreRequest) -> MemoryStore:
    """The factory the test entry point names."""
    MADE.append(request)
    return MemoryStore(result_ttl=request.settings.result_ttl)


@pytest.fixture(autouse=True)
def restore_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    MADE.clear()


@pytest.fixture
def transport() -> Transport:
    return make_transport(SETTINGS.transport_options())


def test_the_built_in_schemes() -> None:
    assert known_schemes() == ["amqp", "postgres", "postgresql", "redis", "rediss", "unix"]


def test_amqp_is_the_default_store(transport: Transport) -> None:
    assert isinstance(make_store("amqp", transport, settings=SETTINGS), AmqpResultStore)


def test_a_registered_scheme_builds_its_store(transport: Transport) -> None:
    register_store("memory", make_recorded)
    store = make_store("memory://anything", transport, 8, settings=SETTINGS)
    assert isinstance(store, MemoryStore) and store.result_ttl == 42
    assert [(r.url, r.concurrency, r.transport) for r in MADE] == [
        ("memory://anything", 8, transport)
    ]
    assert "memory" in known_schemes()


def test_an_unknown_scheme_names_the_known_ones(transport: Transport) -> None:
    with pytest.raises(ConfigurationError, match="unknown result store") as caught:
        make_store("mysql://user:s3cret@db/x", transport, settings=SETTINGS)
    message = str(caught.value)
    assert "redis://" in message and "postgresql://" in message
    assert "s3cret" not in message
    with pytest.raises(ConfigurationError, match="unknown result store"):
        make_store("amqp://elsewhere/", transport, settings=SETTINGS)  # the AMQP store has no URL


@pytest.mark.parametrize("scheme", ["", "My", "1x", "a b", "x:y"])
def test_a_scheme_must_be_a_url_scheme(scheme: str) -> None:
    with pytest.raises(ConfigurationError, match="not a URL scheme"):
        register_store(scheme, make_recorded)


def test_a_factory_must_make_a_store(transport: Transport) -> None:
    register_store("broken", lambda request: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="lacks durable, open"):
        make_store("broken://", transport, settings=SETTINGS)


def _install_entry_point(root: Path, scheme: str, target: str) -> None:
    """A distribution on ``root`` whose entry point maps ``scheme`` to ``target``."""
    dist = root / f"fake_store_{uuid.uuid4().hex[:8]}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist.name[:-15]}\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{scheme} = {target}\n")


def test_an_unknown_scheme_is_looked_up_by_entry_point(
    transport: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme = f"ep{uuid.uuid4().hex[:8]}"
    _install_entry_point(tmp_path, scheme, f"{__name__}:make_recorded")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert scheme not in known_schemes()  # loaded only when asked for
    store = make_store(f"{scheme}://x", transport, settings=SETTINGS)
    assert isinstance(store, MemoryStore) and len(MADE) == 1
    assert scheme in known_schemes()  # and then kept


def test_an_entry_point_that_fails_to_load_is_a_configuration_error(
    transport: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheme = f"ep{uuid.uuid4().hex[:8]}"
    _install_entry_point(tmp_path, scheme, "no_such_module_for_taskq:make")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match=f"entry point '{scheme}'.*failed to load"):
        make_store(f"{scheme}://x", transport, settings=SETTINGS)


def test_the_checked_members_come_from_the_protocol() -> None:
    assert RESULT_STORE_MEMBERS == (
        "durable", "open", "close", "reply_to", "track", "forget", "reset", "record", "get",
        "wait",
    )  # fmt: skip

    class Wider(ResultStore, Protocol):
        version: int

        def extra(self) -> None: ...

    assert protocol_members(Wider) == (*RESULT_STORE_MEMBERS, "version", "extra")


def test_an_app_given_an_object_without_a_member_names_it() -> None:
    class NoWait:
        durable = True

        def __getattr__(self, name: str) -> Any:
            if name == "wait":
                raise AttributeError(name)
            return lambda *args, **kwargs: None

    with pytest.raises(ConfigurationError, match=r"lacks wait \("):
        App("x", broker=UNREACHABLE, results=NoWait())  # type: ignore[arg-type]
