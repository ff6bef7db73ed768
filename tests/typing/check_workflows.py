"""Type-checked by mypy (tests/test_typing.py), never executed: the typed workflow API.

``assert_type`` pins what signatures and their compositions infer; the ``# type: ignore``
lines MUST be errors (``warn_unused_ignores`` fails mypy if one stops being one).
"""

from __future__ import annotations

from typing import assert_type

from taskq import App
from taskq.workflow import Signature, TaskSignature, WorkflowHandle, chain, chord, group

app = App("typing-workflows", broker="amqp://guest:guest@127.0.0.1:5672/")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def to_text(x: int) -> str:
    return str(x)


@app.task
def shout(text: str) -> str:
    return text.upper()


@app.task
async def total(values: list[int]) -> int:
    return sum(values)


@app.task
async def halve(x: float) -> float:
    return x / 2


@app.task
async def note(task_id: str) -> None:
    pass


# Signatures: complete (ignores the previous result) or partial (takes it first).
assert_type(add.s(2, 2), TaskSignature[object, int])
assert_type(add.s(2), TaskSignature[int, int])
assert_type(add.s(y=2), TaskSignature[int, int])
add.s("x")  # type: ignore[call-overload]
add.s(1, "x")  # type: ignore[call-overload]
add.s(1, 2, 3)  # type: ignore[call-overload]
assert_type(add.s(1).options(queue="q", priority=1), TaskSignature[int, int])

# Chains: each step must take the result before it.
assert_type(add.s(1, 2) | to_text.s() | shout.s(), Signature[object, str])
assert_type(chain(add.s(1, 2), to_text.s(), shout.s()), Signature[object, str])
assert_type(add.s(1, 2) | halve.s(), Signature[object, float])  # an int fits a float
add.s(1, 2) | shout.s()  # type: ignore[operator]
chain(add.s(1, 2), shout.s())  # type: ignore[misc]
assert_type(add.s(1, 2) | add.s(3, 4), Signature[object, int])  # complete: ignores it

# Groups and chords: the callback takes the list of results.
assert_type(group(add.s(1, 2), add.s(3, 4)), Signature[object, list[int]])
assert_type(chord([add.s(1, 2), add.s(3, 4)], total.s()), Signature[object, int])
chord([add.s(1, 2)], shout.s())  # type: ignore[arg-type]

# Links: a link takes the result, an error link the failed task's ID.
assert_type(add.s(1, 2).link(to_text.s()), TaskSignature[object, int])
add.s(1, 2).link_error(note.s())
add.s(1, 2).link_error(add.s(1))  # type: ignore[arg-type]


async def sending() -> None:
    handle = await (add.s(1, 2) | to_text.s()).delay()
    assert_type(handle, WorkflowHandle[str])
    assert_type(await handle.result(), str)
    group_handle = await group(add.s(1, 2), add.s(3, 4)).delay()
    assert_type(await group_handle.result(), list[int])
    await add.s(1).delay()  # type: ignore[misc]
