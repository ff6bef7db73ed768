"""The memory of seen workers is kept per broker location (host, port, vhost) and prefix."""

from __future__ import annotations

from pathlib import Path

from taskq.control import LastSeen, broker_location


def test_location_has_no_credentials_and_names_the_vhost() -> None:
    assert broker_location("amqp://u:secret@Rabbit.example:5673/prod") == "rabbit.example:5673/prod"
    assert broker_location("amqp://guest:guest@127.0.0.1/") == "127.0.0.1:5672/"
    assert broker_location("amqps://h") == "h:5671/"


def test_memory_is_separate_per_broker_vhost_and_prefix(tmp_path: Path) -> None:
    here = LastSeen("amqp://guest:guest@127.0.0.1:5672/", "p", str(tmp_path))
    here.save({"w1": 1e12})
    same = LastSeen("amqp://other:pw@127.0.0.1:5672/", "p", str(tmp_path))
    assert same.load() == {"w1": 1e12}  # who connects does not matter, where does
    for broker, prefix in [
        ("amqp://guest:guest@127.0.0.1:5672/vh", "p"),
        ("amqp://guest:guest@10.0.0.9:5672/", "p"),
        ("amqp://guest:guest@127.0.0.1:5672/", "q"),
    ]:
        assert LastSeen(broker, prefix, str(tmp_path)).load() == {}


def test_old_answers_are_forgotten(tmp_path: Path) -> None:
    memory = LastSeen("amqp://127.0.0.1/", "p", str(tmp_path))
    memory.save({"old": 1.0, "new": 1e12})
    assert memory.load() == {"new": 1e12}
