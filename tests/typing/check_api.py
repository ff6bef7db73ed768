"""Type-checked by mypy (tests/test_typing.py), never executed.

``assert_type`` pins what the public API infers. The lines marked ``# type: ignore[...]`` are
calls that MUST be type errors: with ``warn_unused_ignores`` (part of ``strict``), mypy fails
if one of them stops being an error, so the ignores prove the errors.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, assert_type

from pydantic import BaseModel

from taskq import (
    App,
    CancelResult,
    DeadLettered,
    ErrorInfo,
    Hook,
    RetryPolicy,
    Sending,
    Task,
    TaskCall,
    TaskContext,
    TaskDone,
    TaskHandle,
    TaskRun,
    TaskStatus,
    current,
    current_or_none,
)

app = App("typing", broker="amqp://guest:guest@127.0.0.1:5672/")


class Order(BaseModel):
    order_id: int
    item: str


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
def shout(text: str) -> str:
    return text.upper()


@app.task(queue="orders", priority=5, timeout=30, retry=RetryPolicy(max_attempts=5))
async def make_order(order_id: int, *, item: str = "book") -> Order:
    return Order(order_id=order_id, item=item)


@app.task(name="when")
def when(days: int = 0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


@app.task
async def nothing() -> None:
    pass


@app.periodic(cron="0 3 * * *", timezone="Europe/Berlin", args=(7,), catch_up="all")
async def purge_old(days: int) -> int:
    return days


@app.periodic(every=dt.timedelta(minutes=5))
def heartbeat() -> None:
    pass


@app.periodic(every=30, catch_up="sometimes")  # type: ignore[arg-type]
async def bad_policy() -> None:
    pass


# mypy's assert_type compares ParamSpecs with their parameter names (``Arg(int, 'x')``), which
# a type expression cannot spell: the parameter lists are checked by assignment instead, with
# near misses that must be errors.
add_t: Task[[int, int], int] = add
shout_t: Task[[str], str] = shout
nothing_t: Task[[], None] = nothing
purge_old_t: Task[[int], int] = purge_old  # a periodic entry is a task like any other
heartbeat_t: Task[[], None] = heartbeat
wrong_params: Task[[str, int], int] = add  # type: ignore[assignment]
wrong_arity: Task[[int], int] = add  # type: ignore[assignment]
wrong_return: Task[[int, int], str] = add  # type: ignore[assignment]
shout_wrong_return: Task[[str], int] = shout  # type: ignore[assignment]


async def client() -> None:
    async with app:
        h = await add.delay(4, 6)
        assert_type(h, TaskHandle[int])
        assert_type(await h.result(), int)
        assert_type(await h.result(timeout=10), int)
        assert_type(await h.status(), TaskStatus)
        assert_type(await h.cancel(reason="why", wait=True), CancelResult)
        assert_type(await app.cancel(h.id), CancelResult)
        assert_type(h.id, str)

        assert_type(await (await shout.delay("hi")).result(), str)
        assert_type(await (await make_order.delay(1, item="pen")).result(), Order)
        assert_type(await (await when.delay()).result(), dt.datetime)
        assert_type(await (await nothing.delay()).result(), None)

        call: TaskCall[[int, int], int] = add.options(priority=3)
        refined: TaskCall[[int, int], int] = call.options(countdown=5)
        keyed: TaskCall[[int, int], int] = add.options(partition_key="customer-7")
        assert_type(await keyed.delay(1, 2), TaskHandle[int])
        wrong_call: TaskCall[[int, int], str] = add.options()  # type: ignore[assignment]
        del wrong_call
        assert_type(await refined.delay(1, 2), TaskHandle[int])
        assert_type(await call.delay(1, 2), TaskHandle[int])
        h2 = await add.options(priority=9, countdown=30).delay(1, y=2)
        assert_type(h2, TaskHandle[int])

        # By name, without the function: untyped on purpose.
        assert_type(app.handle("id"), TaskHandle[Any])
        assert_type(await app.send("add", 1, 2), TaskHandle[Any])

        # Wrong calls are type errors:
        await add.delay("x", 1)  # type: ignore[arg-type]
        await add.delay(1)  # type: ignore[call-arg]
        await add.delay(1, 2, 3)  # type: ignore[call-arg]
        await add.delay(1, z=2)  # type: ignore[call-arg]
        await add.options(priority=3).delay(1, "y")  # type: ignore[arg-type]
        await shout.delay(1)  # type: ignore[arg-type]
        await make_order.delay(1, "pen")  # type: ignore[call-arg]
        add.options(prioriti=3)  # type: ignore[call-arg]
        await add.options(priority="high").delay(1, 2)  # type: ignore[arg-type]
        wrong: TaskHandle[str] = await add.delay(1, 2)  # type: ignore[assignment]
        del wrong
        text: str = await h.result()  # type: ignore[assignment]
        del text


async def inside_a_task() -> None:
    ctx = current()
    assert_type(ctx.task_id, str)
    assert_type(ctx.attempt, int)
    assert_type(ctx.scheduled_for, dt.datetime | None)
    await ctx.progress(0.5, "half")


# -- hooks -----------------------------------------------------------------------------------


class Tracing(Hook):
    """A hook with the right signatures: mypy accepts it."""

    async def before_send(self, send: Sending) -> None:
        assert_type(send.envelope.task_id, str)
        assert_type(send.context, TaskContext | None)
        send.headers["traceparent"] = "00-..."

    async def before_run(self, run: TaskRun) -> None:
        assert_type(run.context, TaskContext)
        assert_type(run.headers.get("traceparent"), Any | None)

    async def after_run(self, run: TaskRun) -> None:
        assert_type(run.exception, BaseException | None)
        assert_type(run.runtime, float | None)

    async def on_failure(self, done: TaskDone) -> None:
        assert_type(done.error, ErrorInfo | None)

    async def on_dead_letter(self, dead: DeadLettered) -> None:
        assert_type(dead.reason, str)

    def on_process_init(self) -> None: ...


app.add_hook(Tracing())
assert_type(current_or_none(), TaskContext | None)


class WrongHook(Hook):
    """Overrides that do not fit the base class are errors."""

    async def before_send(self, send: TaskRun) -> None:  # type: ignore[override]
        ...

    def after_run(self, run: TaskRun) -> None:  # type: ignore[override]
        ...

    async def on_process_init(self) -> None:  # type: ignore[override]
        ...


app.add_hook("not a hook")  # type: ignore[arg-type]
