"""Reply codes to taskq's exceptions (taskq.transport.errors.by_code, used by both clients)."""

from __future__ import annotations

from taskq import BrokerUnavailable, TopologyMismatch
from taskq.transport.errors import by_code


def test_a_406_for_other_arguments_is_a_topology_mismatch() -> None:
    exc = RuntimeError("PRECONDITION_FAILED - inequivalent arg 'x-max-priority'")
    error = by_code(406, exc, "declaring queue 'q'")
    assert isinstance(error, TopologyMismatch)
    assert error.reply_code == 406


def test_a_stream_without_a_replica_here_yet_is_passing_not_a_mismatch() -> None:
    # What RabbitMQ answers when a stream is read through a node whose replica is not up yet.
    exc = RuntimeError(
        "PRECONDITION_FAILED - queue 'queue 'p.revocations' in vhost '/'' does not have a "
        "replica on the local node"
    )
    error = by_code(406, exc, "reading stream 'p.revocations'")
    assert isinstance(error, BrokerUnavailable)
    assert "no replica on this node yet" in str(error)
