"""Workflows without a broker: signatures, the wire format, compiling and what follows a step."""

from __future__ import annotations

from typing import Any

import pytest

from taskq import App, ConfigurationError, InvalidArguments, codec
from taskq.cli.inspect import workflow_columns
from taskq.events import envelope_fields
from taskq.message import Envelope, decode_envelope
from taskq.results.shared import SharedStore
from taskq.workflow import Chain, Group, TaskSignature, chain, chord, group
from taskq.workflow.compile import Compiler, needs_join
from taskq.workflow.runner import unpack_all
from taskq.workflow.store import join_store_of
from taskq.workflow.wire import envelope_of_node, expand, flat_ids, successors

app = App("wf-unit")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def double(x: int) -> int:
    return 2 * x


@app.task
async def total(xs: list[int]) -> int:
    return sum(xs)


@app.task
async def note(task_id: str) -> None:
    pass


@app.task
async def scaled(x: int, *, factor: int = 2) -> int:
    return x * factor


def compiler() -> Compiler:
    return Compiler(app.settings, None)


# -- signatures --------------------------------------------------------------------------------


def test_a_signature_is_complete_when_every_argument_is_given() -> None:
    sig = add.s(2, 2)
    assert isinstance(sig, TaskSignature)
    assert (sig.args, sig.kwargs, sig.partial) == ((2, 2), {}, False)


def test_a_signature_missing_its_first_argument_takes_the_previous_result() -> None:
    sig = add.s(2)
    assert sig.partial and sig.args == (2,)
    assert scaled.s(factor=3).partial and scaled.s(factor=3).kwargs == {"factor": 3}


def test_wrong_arguments_fail_when_the_signature_is_made() -> None:
    with pytest.raises(InvalidArguments):
        add.s("x")  # type: ignore[call-overload]
    with pytest.raises(InvalidArguments):
        add.s("x", 2)  # type: ignore[call-overload]
    with pytest.raises(InvalidArguments):
        add.s(1, 2, 3)  # type: ignore[call-overload]


def test_options_link_and_link_error_return_new_signatures() -> None:
    sig = double.s(1)
    queued = sig.options(queue="other", priority=0, task_id="my-id")
    assert sig.step_options.queue is None and queued.step_options.queue == "other"
    linked = sig.link(double.s()).link_error(double.s(3))
    assert sig.links == () and len(linked.links) == 1 and len(linked.error_links) == 1


def test_chains_flatten_and_groups_take_an_iterable_or_arguments() -> None:
    flow = add.s(1, 2) | double.s() | double.s()
    assert isinstance(flow, Chain) and len(flow.steps) == 3
    assert isinstance(group(double.s(i) for i in range(3)), Group)
    assert isinstance(group(double.s(1), double.s(2)), Group)
    assert isinstance(chord([double.s(1)], total.s()), Chain)
    with pytest.raises(ConfigurationError):
        chain()  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError):
        group([])


# -- the wire ----------------------------------------------------------------------------------


def _decoded(envelope: Envelope) -> Envelope:
    message = envelope.to_message()
    return decode_envelope(
        body=message.body,
        content_type=message.content_type,
        message_id=message.message_id,
        task_name=message.type,
        headers={},
        priority=None,
        reply_to=None,
        queue="q",
    )


def test_a_workflow_step_travels_as_schema_4_and_a_plain_task_as_schema_2() -> None:
    plain = Envelope("id", "t", "q", [1], {}, sent_at=1.0)
    assert codec.unpack(plain.to_message().body)[0] == 2
    step = Envelope("id", "t", "q", [1], {}, sent_at=1.0, workflow={"f": ["x"]})
    assert codec.unpack(step.to_message().body)[0] == 4
    assert _decoded(step).workflow == {"f": ["x"]}
    assert _decoded(plain).workflow is None


def test_compiling_a_chain_puts_the_rest_in_the_first_step() -> None:
    compiled = compiler().compile(add.s(1, 2) | double.s() | double.s())
    root = compiled.root
    rest = root["w"]["n"]
    assert [root["t"], *(node["t"] for node in rest)] == ["add", "double", "double"]
    assert compiled.shape == rest[-1]["id"]
    # a failure of any step before the last fails the workflow's final task
    assert root["w"]["f"] == [compiled.shape] and rest[0]["w"]["f"] == [compiled.shape]
    assert "f" not in rest[-1].get("w", {})


def test_a_chord_member_failure_runs_the_callback_error_links() -> None:
    flow = chord([double.s(1), double.s(2)], total.s().link_error(note.s()))
    root = compiler().compile(flow).root
    callback = root["w"]["n"][0]
    error_link = callback["w"]["e"][0]
    assert all(member["w"]["e"] == [error_link] for member in root["g"])


def test_which_workflows_need_a_join() -> None:
    def compiled(sig: Any) -> Any:
        return compiler().compile(sig).root

    assert not needs_join(compiled(add.s(1, 2) | double.s()))
    assert not needs_join(compiled(group(double.s(1), double.s(2))))
    assert needs_join(compiled(chord([double.s(1)], total.s())))
    assert needs_join(compiled(add.s(1, 2) | group(double.s(), double.s()) | total.s()))
    assert not needs_join(compiled(add.s(1, 2) | group(double.s(), double.s())))
    assert needs_join(compiled(group(double.s(1), double.s(2)).link(total.s())))


def test_a_group_with_something_after_it_gives_each_member_a_join_ref() -> None:
    compiled = compiler().compile(chord([double.s(1), double.s(2)], total.s()))
    sent = expand(compiled.root, None, {}, has_value=False)
    assert [args for _, args, _ in sent] == [[1], [2]]
    joins = [meta["j"] for _, _, meta in sent]
    assert [(j["i"], j["n"]) for j in joins] == [(0, 2), (1, 2)]
    assert joins[0]["id"] == compiled.root["id"]
    assert codec.unpack(joins[0]["c"]["n"][0])["t"] == "total"
    follow, join = successors(sent[0][2])
    assert follow == [] and join == joins[0]
    assert join is not None
    # what follows the join: the callback, given the list
    after, _ = successors(join["c"])
    [(callback, args, _)] = expand(after[0][0], [2, 4], after[0][1], has_value=True)
    assert (callback["t"], args) == ("total", [[2, 4]])


def _next_step(meta: Any, value: Any) -> tuple[Any, Any]:
    [(node, inherited)], _ = successors(meta)
    [(node, _args, meta)] = expand(node, value, inherited, has_value=True)
    return node, meta


def test_a_chain_step_passes_the_packed_rest_on_without_unpacking_it() -> None:
    steps = [double.s() for _ in range(5)]
    root = compiler().compile(chain(add.s(1, 2), *steps)).root
    [(_, _, first)] = expand(root, None, {}, has_value=False)
    assert all(type(node) is bytes for node in first["n"])
    node, second = _next_step(first, 3)
    assert node["t"] == "double" and len(second["n"]) == 4
    # the same bytes objects: nothing after the next node is unpacked or packed again
    assert all(a is b for a, b in zip(second["n"], first["n"][1:], strict=True))


def test_a_schema_3_step_whose_rest_is_maps_is_still_followed() -> None:
    root = compiler().compile(add.s(1, 2) | double.s() | total.s()).root
    old = Envelope("id", "add", "q", [1, 2], {}, sent_at=1.0, workflow=root["w"])
    body = codec.unpack(old.to_message().body)
    body[0] = 3  # as a worker before packed nodes sent it
    message = old.to_message()
    decoded = decode_envelope(
        body=codec.pack(body), content_type=message.content_type, message_id="id",
        task_name="add", headers={}, priority=None, reply_to=None, queue="q",
    )  # fmt: skip
    assert decoded.workflow is not None and type(decoded.workflow["n"][0]) is dict
    node, meta = _next_step(decoded.workflow, 3)
    assert node["t"] == "double" and codec.unpack(meta["n"][0])["t"] == "total"


def test_a_partial_step_gets_the_previous_result_first() -> None:
    compiled = compiler().compile(add.s(1, 2) | add.s(10))
    follow, join = successors(compiled.root["w"])
    assert join is None
    [(node, args, _meta)] = expand(follow[0][0], 3, follow[0][1], has_value=True)
    assert (node["t"], args) == ("add", [3, 10])


def test_a_group_result_shape_follows_its_nesting() -> None:
    compiled = compiler().compile(group(group(double.s(1), double.s(2)), double.s(3)))
    assert len(compiled.shape) == 2 and len(compiled.shape[0]) == 2
    assert len(flat_ids(compiled.shape)) == 3


def test_a_step_sent_after_another_names_it_parent_and_keeps_the_root() -> None:
    node = compiler().compile(double.s(1)).root
    first = Envelope("first", "add", "default", [1, 2], {}, root_id=None)
    second = envelope_of_node(app.settings, node, [3], {}, claimed=True, after=first)
    assert (second.parent_id, second.root_id) == ("first", "first")
    assert second.dedupe and second.workflow is not None and "c" in second.workflow
    third = envelope_of_node(app.settings, node, [6], {}, claimed=True, after=second)
    assert (third.parent_id, third.root_id) == (second.task_id, "first")


class _Joins:
    """A stand-in with the join capability (never called here)."""

    durable = True

    async def join(self, join_id: str, index: int, size: int, value: bytes) -> list[bytes] | None:
        return None

    async def claim(self, key: str, token: str) -> bool:
        return True


def test_a_store_object_given_to_the_app_keeps_its_join_capability() -> None:
    joins = _Joins()
    lease = SharedStore(joins).lease()  # type: ignore[arg-type]
    assert join_store_of(lease) is joins
    assert join_store_of(object()) is None


def test_events_show_a_steps_parent_root_and_chord_position() -> None:
    compiled = compiler().compile(chord([double.s(1), double.s(2)], total.s()))
    [_, (node, args, meta)] = expand(compiled.root, None, {}, has_value=False)
    first = Envelope("first", "add", "default", [1, 2], {})
    member = envelope_of_node(app.settings, node, args, meta, claimed=False, after=first)
    fields = envelope_fields(member)
    assert (fields["parent_id"], fields["root_id"]) == ("first", "first")
    assert (fields["join"], fields["index"], fields["of"]) == (compiled.root["id"], 1, 2)
    assert "join" not in envelope_fields(first) and "parent_id" not in envelope_fields(first)


def test_inspect_tables_show_the_workflow_columns_only_for_workflow_tasks() -> None:
    heads = ["TASK ID", "ARGS"]
    plain = [{"task_id": "a"}]
    assert workflow_columns(heads, [("a", "1")], plain) == (heads, [("a", "1")])
    tasks = [{"task_id": "m", "root_id": "wf", "join": "wf", "index": 1, "of": 3},
             {"task_id": "c", "root_id": "wf", "parent_id": "m"}, {"task_id": "x"}]  # fmt: skip
    rows = [("m", "1"), ("c", "[2]"), ("x", "0")]
    assert workflow_columns(heads, rows, tasks) == (
        ["TASK ID", "ROOT", "PARENT", "POSITION", "ARGS"],
        [("m", "wf", "", "2/3", "1"), ("c", "wf", "m", "", "[2]"), ("x", "", "", "", "0")],
    )


def test_a_join_s_values_unpack_as_one_array_of_any_size() -> None:
    for size in (0, 1, 15, 16, 65_536):
        values = [codec.pack([i, str(i)]) for i in range(size)]
        assert unpack_all(values) == [[i, str(i)] for i in range(size)]
