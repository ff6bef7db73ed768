"""The ack bookkeeping of one channel (transport.wire.AckLedger) against a simple model.

Delivery tags are per channel and ``basic.ack(multiple=True)`` settles every unsettled tag up
to the given one on the whole channel, whatever queue it came from. The model applies the
frames the ledger emits exactly as the broker does, so any frame that would settle a delivery
whose outcome is not recorded yet fails the test.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from taskq.transport.wire import AckLedger, acker_of

# An operation: ("arrive", queue) | ("finish", index among arrived) | ("reject", index) |
# ("flush", 0). Indexes wrap around the deliveries that arrived so far.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(0, 2)),
        st.tuples(st.just("finish"), st.integers(0, 10_000)),
        st.tuples(st.just("reject"), st.integers(0, 10_000)),
        st.tuples(st.just("flush"), st.just(0)),
    ),
    max_size=200,
)


class Channel:
    """Stands in for a channel: only its identity matters to the ledger."""


class Broker:
    """The broker's view of one channel: which delivered tags are still unsettled."""

    def __init__(self) -> None:
        self.unsettled: set[int] = set()

    def ack(self, tag: int, multiple: bool) -> set[int]:
        assert tag in self.unsettled, f"ack of unknown or settled tag {tag} closes the channel"
        settled = {t for t in self.unsettled if t <= tag} if multiple else {tag}
        self.unsettled -= settled
        return settled


def test_every_consumer_of_a_channel_shares_one_acker() -> None:
    channel, other = Channel(), Channel()
    assert acker_of(channel) is acker_of(channel)  # type: ignore[arg-type]
    assert acker_of(channel) is not acker_of(other)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(operations)
def test_no_ack_covers_an_unfinished_delivery_and_every_finished_one_is_acked(
    ops: list[tuple[str, int]],
) -> None:
    channel, broker = Channel(), Broker()
    # Each queue's consumer gets its acker the way the transport does: by channel.
    ledgers = [acker_of(channel).ledger for _queue in range(3)]  # type: ignore[arg-type]
    queue_of: dict[int, int] = {}
    arrived: list[int] = []  # tags in arrival order, across queues (one channel)
    finished: set[int] = set()
    rejected: set[int] = set()
    acked: set[int] = set()

    def flush() -> None:
        for tag, multiple in [frame for ledger in ledgers for frame in ledger.flush()]:
            settled = broker.ack(tag, multiple)
            assert settled <= finished, f"acked unfinished deliveries {settled - finished}"
            assert not settled & acked, "a delivery was acked twice"
            acked.update(settled)

    for op, value in ops:
        if op == "arrive":
            tag = len(arrived) + 1
            arrived.append(tag)
            broker.unsettled.add(tag)
            queue_of[tag] = value
            ledgers[value].track(tag)
        elif op == "flush":
            flush()
        elif arrived:
            tag = arrived[value % len(arrived)]
            if tag in finished or tag in rejected:
                continue  # a delivery ends once
            if op == "finish":
                finished.add(tag)
                ledgers[queue_of[tag]].finish(tag)
            else:
                rejected.add(tag)
                broker.unsettled.discard(tag)
                ledgers[queue_of[tag]].drop(tag)
    flush()
    assert acked == finished
    assert broker.unsettled == set(arrived) - finished - rejected
    assert acker_of(channel).ledger.unsettled == len(broker.unsettled)  # type: ignore[arg-type]


def test_a_long_task_at_the_head_does_not_hold_back_the_others() -> None:
    ledger = AckLedger()
    for tag in (1, 2, 3, 4):
        ledger.track(tag)
    for tag in (2, 3, 4):
        ledger.finish(tag)
    assert sorted(ledger.flush()) == [(2, False), (3, False), (4, False)]
    ledger.finish(1)
    assert ledger.flush() == [(1, True)]


def test_a_finished_run_at_the_head_is_one_multiple_ack() -> None:
    ledger = AckLedger()
    for tag in range(1, 101):
        ledger.track(tag)
    for tag in range(1, 100):
        ledger.finish(tag)
    assert ledger.flush() == [(99, True)]
    assert ledger.unsettled == 1
