"""Feedback on an answer in AgentOps: in the turn's trace while it is open, else a small
span of its own linked to it (or naming the turn only, when the trace is not known here).

In-process over a plain OpenTelemetry tracer (agentops itself is never initialised here).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from bot.telemetry import DEFAULT_TAGS
from bot.telemetry._export_health import ExportHealth
from bot.telemetry.base import NoopTelemetry


@pytest.fixture
def traced() -> Iterator[tuple[Any, Any]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bot.telemetry.agentops_telemetry import AgentOpsTelemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = AgentOpsTelemetry(
        tracer=provider.get_tracer("test"),
        flush=provider.force_flush,
        shutdown=provider.shutdown,
        health=ExportHealth(),
        tags=DEFAULT_TAGS,
    )
    yield telemetry, exporter
    provider.shutdown()


def _feedback(exporter: Any) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name == "feedback"]


def _vote(telemetry: Any, turn_id: int, trace_turn_id: int, *, helpful: bool = True) -> None:
    telemetry.record_feedback(
        turn_id=turn_id,
        trace_turn_id=trace_turn_id,
        helpful=helpful,
        user="U1",
        team="T1",
        channel="C1",
    )


def _turn(telemetry: Any, turn_id: int) -> Any:
    return telemetry.start_turn(
        runtime="responses", team="T1", channel="C1", thread_key="k", turn_id=turn_id
    )


def test_feedback_while_the_trace_is_open_is_a_span_in_it(traced: tuple[Any, Any]) -> None:
    telemetry, exporter = traced
    trace = _turn(telemetry, 7)
    _vote(telemetry, 7, 7)
    [span] = _feedback(exporter)
    assert span.parent is not None and span.parent.span_id == trace.span.get_span_context().span_id
    assert span.context.trace_id == trace.span.get_span_context().trace_id
    assert span.attributes["tutorbot.turn_id"] == 7
    assert span.attributes["tutorbot.feedback"] == "good"
    assert span.attributes["tutorbot.user"] == "U1"
    trace.end("Success")


def test_feedback_after_the_trace_ended_is_a_linked_span(traced: tuple[Any, Any]) -> None:
    telemetry, exporter = traced
    trace = _turn(telemetry, 8)
    trace.end("Success")
    # The answer of a quiz's continuation turn (9) belongs to the trace of turn 8.
    _vote(telemetry, 9, 8, helpful=False)
    [span] = _feedback(exporter)
    assert span.parent is None
    assert span.context.trace_id != trace.span.get_span_context().trace_id
    [link] = span.links
    assert link.context.span_id == trace.span.get_span_context().span_id
    assert span.attributes["tutorbot.turn_id"] == 9
    assert span.attributes["tutorbot.trace_turn_id"] == 8
    assert span.attributes["tutorbot.feedback"] == "bad"


def test_feedback_on_a_turn_this_process_never_traced_names_the_turn(
    traced: tuple[Any, Any],
) -> None:
    telemetry, exporter = traced
    _vote(telemetry, 42, 42)
    [span] = _feedback(exporter)
    assert span.parent is None and not span.links
    assert span.attributes["tutorbot.turn_id"] == 42


def test_without_agentops_feedback_is_a_no_op() -> None:
    NoopTelemetry().record_feedback(
        turn_id=1, trace_turn_id=1, helpful=True, user="U1", team="T1", channel="C1"
    )


def test_a_forgotten_trace_is_still_linked_without_being_kept(traced: tuple[Any, Any]) -> None:
    telemetry, exporter = traced
    trace = _turn(telemetry, 10)
    context = trace.span.get_span_context()
    trace.end("Success")
    del trace  # the turn is over: nobody holds its trace (nor the text in its attributes)
    gc.collect()
    _vote(telemetry, 10, 10)
    [span] = _feedback(exporter)
    [link] = span.links
    assert (link.context.trace_id, link.context.span_id) == (context.trace_id, context.span_id)
