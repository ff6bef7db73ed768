"""OpenTelemetry tracing (taskq.integrations.otel) against the real broker: one trace from a
client's request span through the worker process's run span and what the task does there;
retried attempts linked; errors recorded with status ERROR; the run span current in the task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskq import App, Retry, RetryPolicy, TaskFailed, current
from taskq.integrations.otel import PREVIOUS_ATTEMPT_HEADER, OpenTelemetryHook
from tests.apps.otelapp import span_record
from tests.support import BROKER, WorkerProcess, eventually, running_worker


def traced_app(prefix: str) -> tuple[App, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = App("otel", broker=BROKER, prefix=prefix)
    app.add_hook(OpenTelemetryHook(tracer_provider=provider))
    return app, exporter, provider


def records(spans: tuple[ReadableSpan, ...], task: str | None = None) -> list[dict[str, Any]]:
    """The spans as records, only those of ``task`` (by its ``taskq.task.name``) if given."""
    found = [span_record(span) for span in spans]
    return [s for s in found if task is None or s["attributes"].get("taskq.task.name") == task]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matching = [s for s in spans if s["name"] == name]
    assert len(matching) == 1, f"{name}: {[s['name'] for s in spans]}"
    return matching[0]


@pytest.mark.slow
async def test_one_trace_from_the_client_request_through_the_worker_process(
    prefix: str, topology_cleanup: set[str], tmp_path: Path
) -> None:
    spans_path = tmp_path / "spans.jsonl"
    worker = WorkerProcess("tests.apps.otelapp:app", prefix, env={"OTEL_SPANS": str(spans_path)})
    client, exporter, provider = traced_app(prefix)
    tracer = provider.get_tracer("test")
    try:
        await worker.wait_ready()
        async with client:
            with tracer.start_as_current_span("HTTP POST /checkout", kind=trace.SpanKind.SERVER):
                handle = await client.send("checkout", 7)
            task_trace = await handle.result(timeout=20)

            async def worker_spans() -> list[dict[str, Any]]:
                lines = spans_path.read_text().splitlines() if spans_path.exists() else []
                spans = [json.loads(line) for line in lines]
                done = [s for s in spans if s["name"] in ("child run", "GET /stock")]
                return spans if len(done) == 2 else []

            remote = await eventually(worker_spans, timeout=20, what="the worker's spans")
    finally:
        worker.kill()
    local = records(exporter.get_finished_spans())
    http, publish = one(local, "HTTP POST /checkout"), one(local, "default publish")
    assert publish["kind"] == "PRODUCER" and publish["parent_id"] == http["span_id"]
    assert publish["attributes"]["messaging.system"] == "rabbitmq"
    assert publish["attributes"]["messaging.message.id"] == handle.id
    ours = [s for s in remote if s["attributes"].get("taskq.task.name") != "tq_noise"]
    assert {s["pid"] for s in ours} == {worker.process.pid}
    assert {s["trace_id"] for s in ours} == {http["trace_id"]} == {task_trace}
    process = next(
        s for s in ours if s["name"] == "default process"
        and s["attributes"]["taskq.task.name"] == "checkout"
    )  # fmt: skip
    assert process["kind"] == "CONSUMER" and process["parent_id"] == publish["span_id"]
    assert process["attributes"]["messaging.rabbitmq.destination.routing_key"] == "default"
    assert process["attributes"]["messaging.operation.type"] == "process"
    run = one(ours, "checkout run")
    assert run["parent_id"] == process["span_id"]
    # What the task did while it ran: its outgoing call and the task it sent.
    assert one(ours, "GET /stock")["parent_id"] == run["span_id"]
    child_publish = next(
        s for s in ours if s["name"] == "default publish"
        and s["attributes"]["taskq.task.name"] == "child"
    )  # fmt: skip
    assert child_publish["parent_id"] == run["span_id"]
    assert child_publish["attributes"]["taskq.parent_id"] == handle.id
    child_process = next(
        s for s in ours if s["name"] == "default process"
        and s["attributes"]["taskq.task.name"] == "child"
    )  # fmt: skip
    assert child_process["parent_id"] == child_publish["span_id"]


async def test_a_retried_attempt_links_to_the_previous_one(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app, exporter, _ = traced_app(prefix)
    seen_headers: list[dict[str, Any]] = []

    @app.task
    async def twice() -> int:
        seen_headers.append(dict(current().headers))
        if current().attempt < 3:
            raise Retry(delay=0)
        return current().attempt

    async with app, running_worker(app):
        assert await (await twice.delay()).result(timeout=20) == 3

    spans = records(exporter.get_finished_spans(), "twice")
    processes = sorted(
        (s for s in spans if s["name"] == "default process"),
        key=lambda s: s["attributes"]["taskq.attempt"],
    )
    assert [p["attributes"]["taskq.attempt"] for p in processes] == [1, 2, 3]
    publish = one(spans, "default publish")
    assert {p["parent_id"] for p in processes} == {publish["span_id"]}  # one trace, one send
    assert processes[0]["links"] == []
    assert processes[1]["links"] == [processes[0]["span_id"]]
    assert processes[2]["links"] == [processes[1]["span_id"]]
    assert all(p["status"] == "UNSET" for p in processes)  # Retry is control flow, no error
    assert PREVIOUS_ATTEMPT_HEADER not in seen_headers[0]
    assert processes[0]["span_id"] in seen_headers[1][PREVIOUS_ATTEMPT_HEADER]


async def test_an_exception_is_recorded_with_status_error(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app, exporter, _ = traced_app(prefix)

    @app.task(retry=RetryPolicy(max_attempts=1))
    async def broken() -> None:
        raise ValueError("out of stock")

    async with app, running_worker(app):
        with pytest.raises(TaskFailed):
            await (await broken.delay()).result(timeout=20)

    spans = records(exporter.get_finished_spans(), "broken")
    failed = [s for s in spans if s["name"] in ("broken run", "default process")]
    assert len(failed) == 2 and all(s["status"] == "ERROR" for s in failed)
    finished = [span for span in exporter.get_finished_spans() if span.name == "broken run"]
    events = finished[0].events
    assert [e.name for e in events] == ["exception"]
    assert events[0].attributes is not None
    assert events[0].attributes["exception.type"] == "ValueError"
    assert one(spans, "default publish")["status"] == "UNSET"


async def test_the_run_span_is_current_in_a_plain_def_task_too(
    prefix: str, topology_cleanup: set[str]
) -> None:
    app, exporter, _ = traced_app(prefix)

    @app.task
    def in_thread() -> str:
        return f"{trace.get_current_span().get_span_context().span_id:016x}"

    async with app, running_worker(app):
        span_id = await (await in_thread.delay()).result(timeout=20)
    assert one(records(exporter.get_finished_spans()), "in_thread run")["span_id"] == span_id
