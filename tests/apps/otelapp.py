"""An App traced with OpenTelemetry, for the cross-process tracing test.

The worker process configures the OpenTelemetry SDK with an exporter that appends each
finished span as a JSON line to the file named by ``OTEL_SPANS`` (settings come from the
environment, as ``tests.support.WorkerProcess`` sets them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskq import App
from taskq.integrations.otel import OpenTelemetryHook
from tests.apps import noise


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What the tests check of a finished span, as JSON-ready data."""
    context, parent = span.context, span.parent
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": None if parent is None else f"{parent.span_id:016x}",
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each finished span to a file, one JSON line each."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
if os.environ.get("OTEL_SPANS"):
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["OTEL_SPANS"])))

app = App("otelapp")
noise.register(app)
app.add_hook(OpenTelemetryHook(tracer_provider=provider))


@app.task
async def child(n: int) -> int:
    """Sent by ``checkout`` from inside its run."""
    return n + 1


@app.task
async def checkout(order: int) -> str:
    """Makes an outgoing call (a span of its own, as an HTTP client's instrumentation would)
    and sends a child task: both must join the caller's trace."""
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("GET /stock", kind=trace.SpanKind.CLIENT):
        pass
    await child.delay(order)
    return trace.format_trace_id(trace.get_current_span().get_span_context().trace_id)
