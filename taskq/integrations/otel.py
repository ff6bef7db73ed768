"""OpenTelemetry tracing of tasks: a hook that makes spans and carries the trace in messages.

Needs ``pip install 'taskq[otel]'`` (the OpenTelemetry API; the application installs and
configures an SDK and its exporter). Add the hook on both sides, the senders' App and the
worker's (one App module serves both)::

    app.add_hook(OpenTelemetryHook())

Spans, named and tagged after OpenTelemetry's messaging semantic conventions for RabbitMQ:

- ``<queue> publish`` (PRODUCER), from ``before_send`` to the broker's confirm
  (``after_send``); a send that fails after ``before_send`` exports no span;
- ``<queue> process`` (CONSUMER), one per attempt, around the task's run on the worker: a
  child of the publish span, whose context travels in the message's W3C ``traceparent`` and
  ``tracestate`` headers (through the globally configured propagator); a retried attempt's
  span links to the previous attempt's (whose context travels in the ``taskq-otel-previous``
  header);
- ``<task> run`` (INTERNAL), child of the process span and the current span while the task's
  function runs, so what the task does (its HTTP calls, the tasks it sends) joins the trace.

An exception raised by the task (not ``Retry`` or ``Reject``, which are control flow) is
recorded on the run and process spans, with status ERROR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskq import __version__
from taskq.exceptions import TaskControl
from taskq.extras import require_extra
from taskq.hooks import Hook, Sending, TaskRun
from taskq.message import Envelope

require_extra("otel", "taskq.integrations.otel")

from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.propagators.textmap import Getter  # noqa: E402
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode  # noqa: E402
from opentelemetry.trace.propagation.tracecontext import (  # noqa: E402
    TraceContextTextMapPropagator,
)

__all__ = ["PREVIOUS_ATTEMPT_HEADER", "OpenTelemetryHook"]

PREVIOUS_ATTEMPT_HEADER = "taskq-otel-previous"
"""The header of a retry's message: the W3C traceparent of the previous attempt's span."""

_STATE = "taskq.otel"  # our key in Sending.state and TaskRun.state
_W3C = TraceContextTextMapPropagator()  # the previous-attempt header is W3C whatever is global


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads AMQP headers, whose values may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("latin-1") if isinstance(value, bytes) else str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def message_attributes(envelope: Envelope, operation: str, kind: str) -> dict[str, Any]:
    """The span attributes of one task message: the messaging conventions' and taskq's.
    ``operation`` is the operation's name (``publish``, ``process``), ``kind`` its type
    (``send``, ``process``)."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": envelope.queue,
        "messaging.rabbitmq.destination.routing_key": envelope.route,
        "messaging.message.id": envelope.task_id,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
        "messaging.operation": operation,  # the conventions before 1.26
        "taskq.task.name": envelope.task_name,
        "taskq.attempt": envelope.attempt,
    }
    if envelope.parent_id is not None:
        attributes["taskq.parent_id"] = envelope.parent_id
    if envelope.root_id is not None:
        attributes["taskq.root_id"] = envelope.root_id
    return attributes


class OpenTelemetryHook(Hook):
    """Spans for sending and running tasks, and the trace context carried in the messages.

    ``tracer_provider``: the provider to get the tracer from (default: the global one).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("taskq", __version__, tracer_provider=tracer_provider)

    async def before_send(self, send: Sending) -> None:
        """Start the publish span (a child of the current span) and inject its context."""
        envelope = send.envelope
        span = self.tracer.start_span(
            f"{envelope.queue} publish",
            kind=SpanKind.PRODUCER,
            attributes=message_attributes(envelope, "publish", "send"),
        )
        send.state[_STATE] = span
        propagate.inject(send.headers, context=trace.set_span_in_context(span))

    async def after_send(self, send: Sending) -> None:
        """The broker confirmed: end the publish span."""
        span: Span | None = send.state.pop(_STATE, None)
        if span is not None:
            span.end()

    async def before_run(self, run: TaskRun) -> None:
        """Start the process span (child of the publish span, linked to the previous attempt)
        and the run span, and make the run span current for the task's function."""
        envelope = run.envelope
        parent = propagate.extract(run.headers, getter=_GETTER)
        process = self.tracer.start_span(
            f"{envelope.queue} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=message_attributes(envelope, "process", "process"),
            links=_previous_attempt(run.headers),
        )
        running = self.tracer.start_span(
            f"{envelope.task_name} run",
            context=trace.set_span_in_context(process),
            attributes={"taskq.task.name": envelope.task_name, "taskq.attempt": envelope.attempt},
        )
        token = otel_context.attach(trace.set_span_in_context(running))
        run.state[_STATE] = (process, running, token)
        carrier: dict[str, Any] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(process))
        run.next_headers[PREVIOUS_ATTEMPT_HEADER] = carrier["traceparent"]

    async def after_run(self, run: TaskRun) -> None:
        """Detach the run span, record the task's exception, end both spans."""
        opened = run.state.pop(_STATE, None)
        if opened is None:
            return
        process, running, token = opened
        otel_context.detach(token)
        exception = run.exception
        if exception is not None and not isinstance(exception, TaskControl):
            for span in (running, process):
                span.record_exception(exception)
                span.set_status(Status(StatusCode.ERROR, f"{type(exception).__name__}"))
        elif exception is not None:
            process.set_attribute("taskq.control", type(exception).__name__)
        running.end()
        process.end()


def _previous_attempt(headers: Mapping[str, Any]) -> list[Link]:
    """A link to the previous attempt's process span, when this attempt is a retry."""
    value = headers.get(PREVIOUS_ATTEMPT_HEADER)
    if value is None:
        return []
    previous = trace.get_current_span(_W3C.extract({"traceparent": value}, getter=_GETTER))
    context = previous.get_span_context()
    return [Link(context, {"taskq.link": "previous-attempt"})] if context.is_valid else []
