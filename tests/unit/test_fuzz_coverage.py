"""The producer fuzz's draws (tests/conformance/test_producer_fuzz.py) cover every kind of
property, header table and body it knows, whatever names the fuzzed App's tasks have."""

from __future__ import annotations

import pytest

from tests.conformance.test_producer_fuzz import EXAMPLES, KINDS
from tests.fuzz_messages import PROBE, generate


@pytest.mark.parametrize("exclude", [[], ["add", "noise"], ["add", "echo", "sleepy", "boom"]])
def test_the_examples_cover_every_kind(exclude: list[str]) -> None:
    fuzzed = generate(EXAMPLES, exclude=[name for name in exclude if name != PROBE])
    assert {kind for message in fuzzed for kind in message.kinds} >= KINDS
