"""AgentOps telemetry: one OpenTelemetry trace per turn, sent by agentops 0.4.21.

Importing this module imports agentops and OpenTelemetry; ``bot.telemetry.create_telemetry``
only does that when an API key is set.

agentops sets up the tracer provider, the OTLP exporter and its token. The turn traces
are made here, in the shape ``agentops.start_trace`` gives them (a root span
``turn.session`` with ``agentops.span.kind``, ``agentops.tags`` and, at the end,
``agentops.session.end_state``), because its trace API does not fit a server running
many turns on one event loop:

- ``start_trace`` parents the new trace on the caller's *current* context and attaches
  itself there, so traces started from one task would nest; here every turn is a root
  span with an explicit empty parent and nothing is attached to any context;
- ``end_trace`` force-flushes the exporter synchronously (6–10 s when the backend is
  slow or down) and is the only way out of its global registry of active traces.

Ending a turn only queues the span's end for ``SpanEnder``'s thread; OpenTelemetry's
batch processor exports from its own thread every second.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, get_args

import agentops
from agentops.sdk import core as agentops_core
from agentops.sdk.attributes import get_span_attributes, get_trace_attributes
from agentops.semconv import SpanAttributes
from agentops.semconv import SpanKind as AgentOpsSpanKind
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from bot.telemetry._attributes import span_attributes, turn_tags
from bot.telemetry._export_health import ExportHealth
from bot.telemetry._exporter import exporter_reporting_to
from bot.telemetry._off_loop import call_with_cap
from bot.telemetry._span_ender import SpanEnder
from bot.telemetry.base import NoopTurnTrace, Outcome, TurnTrace

log = logging.getLogger("bot.telemetry")

TRACE_NAME = "turn"
FEEDBACK_SPAN = "feedback"
# Turn traces remembered (open or ended) so that feedback on their answers can join or link
# to them; older turns' feedback gets a span naming the turn only.
RECENT_TRACES = 5000
CLOSE_TIMEOUT = 3.0  # seconds aclose() may take in all
_SHUTDOWN_SHARE = 0.5  # of CLOSE_TIMEOUT, kept back from flushing for shutting down
_OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
_STATUS = {"Success": StatusCode.OK, "Fail": StatusCode.ERROR, "Indeterminate": StatusCode.UNSET}


class AgentOpsTurnTrace:
    """One turn's trace. Every method returns at once: the end is done on ``SpanEnder``'s thread."""

    def __init__(
        self,
        span: trace.Span,
        *,
        tracer: trace.Tracer,
        ender: SpanEnder,
        redact_content: bool,
    ) -> None:
        self._span = span
        self._tracer = tracer
        self._ender = ender
        self._redact = redact_content
        self._ended = False

    @property
    def span(self) -> trace.Span:
        """The turn's root span (its ids are what the backend shows)."""
        return self._span

    @property
    def ended(self) -> bool:
        return self._ended

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        if self._ended:
            return
        for name, converted in span_attributes({key: value}, redact_content=self._redact).items():
            self._span.set_attribute(name, converted)

    @contextmanager
    def model_call(self, name: str, **attributes: Any) -> Iterator[None]:
        span = self._tracer.start_span(
            name,
            # Explicit parent: the current context belongs to whichever task runs this.
            context=trace.set_span_in_context(self._span, otel_context.Context()),
            kind=trace.SpanKind.CLIENT,
            attributes={
                **get_span_attributes(operation_name=name, span_kind=AgentOpsSpanKind.LLM),
                **span_attributes(attributes, redact_content=self._redact),
            },
        )
        try:
            yield
        except BaseException as error:
            kind = type(error).__name__
            span.set_attribute("error.type", kind)
            # An error message may quote the input; keep it out when redacting.
            description = kind if self._redact else f"{kind}: {error}"[:500]
            span.set_status(Status(StatusCode.ERROR, description))
            raise
        finally:
            span.end()

    def end(self, outcome: Outcome) -> None:
        if self._ended:
            return
        self._ended = True
        state = outcome if outcome in _OUTCOMES else "Indeterminate"
        self._ender.submit(partial(_finish_turn, self._span, state))


def _finish_turn(span: trace.Span, outcome: str) -> None:
    # A string: agentops 0.4.21 passes enum end states through as attribute values,
    # which OpenTelemetry then drops.
    span.set_attribute(SpanAttributes.AGENTOPS_SESSION_END_STATE, outcome)
    status = _STATUS.get(outcome, StatusCode.UNSET)
    if status is not StatusCode.UNSET:
        span.set_status(Status(status, None if status is StatusCode.OK else outcome))
    span.end()


class AgentOpsTelemetry:
    """``Telemetry`` over an OpenTelemetry tracer whose spans agentops exports."""

    def __init__(
        self,
        *,
        tracer: trace.Tracer,
        flush: Callable[[], bool],
        shutdown: Callable[[], None],
        health: ExportHealth,
        tags: Sequence[str] = (),
        redact_content: bool = False,
        close_timeout: float = CLOSE_TIMEOUT,
        backlog: int = 1000,
    ) -> None:
        self._tracer = tracer
        self._flush = flush
        self._shutdown = shutdown
        self._health = health
        self._tags = tuple(tags)
        self._redact = redact_content
        self._close_timeout = close_timeout
        self._ender = SpanEnder(backlog, on_drop=self._on_drop)
        self._closed = False
        # turn id -> its root span's context (small), and the trace while someone holds it
        # (the span itself keeps the turn's attributes, message text included).
        self._recent: OrderedDict[int, tuple[trace.SpanContext, weakref.ref[AgentOpsTurnTrace]]] = (
            OrderedDict()
        )

    @property
    def health(self) -> ExportHealth:
        return self._health

    @property
    def dropped_traces(self) -> int:
        """Turns whose end was dropped because the ending thread was too far behind."""
        return self._ender.dropped

    def start_turn(
        self,
        *,
        runtime: str,
        team: str,
        channel: str,
        thread_key: str,
        turn_id: int,
        text: str | None = None,
    ) -> TurnTrace:
        if self._closed:
            return NoopTurnTrace()
        tags = turn_tags(self._tags, runtime=runtime, team=team, channel=channel)
        details = {
            "runtime": runtime,
            "team": team,
            "channel": channel,
            "thread_key": thread_key,
            "turn_id": turn_id,
            "input": text,
        }
        span = self._tracer.start_span(
            f"{TRACE_NAME}.{AgentOpsSpanKind.SESSION}",
            context=otel_context.Context(),  # a root span, whatever the caller's context holds
            attributes={
                **get_span_attributes(
                    operation_name=TRACE_NAME, span_kind=AgentOpsSpanKind.SESSION
                ),
                **get_trace_attributes(tags=tags),
                **span_attributes(details, redact_content=self._redact),
            },
        )
        turn_trace = AgentOpsTurnTrace(
            span, tracer=self._tracer, ender=self._ender, redact_content=self._redact
        )
        self._recent[turn_id] = (span.get_span_context(), weakref.ref(turn_trace))
        while len(self._recent) > RECENT_TRACES:
            self._recent.popitem(last=False)
        return turn_trace

    def record_feedback(
        self,
        *,
        turn_id: int,
        trace_turn_id: int,
        helpful: bool,
        user: str,
        team: str,
        channel: str,
    ) -> None:
        if self._closed:
            return
        known = self._recent.get(trace_turn_id)
        open_trace = known[1]() if known is not None else None
        links: list[trace.Link] = []
        if open_trace is not None and not open_trace.ended:
            parent = trace.set_span_in_context(open_trace.span, otel_context.Context())
        else:
            parent = otel_context.Context()  # a small trace of its own
            if known is not None:
                links.append(trace.Link(known[0]))
        details = {
            "turn_id": turn_id,
            "trace_turn_id": trace_turn_id,
            "feedback": "good" if helpful else "bad",
            "user": user,
            "team": team,
            "channel": channel,
        }
        span = self._tracer.start_span(
            FEEDBACK_SPAN,
            context=parent,
            links=links,
            attributes={
                **get_span_attributes(
                    operation_name=FEEDBACK_SPAN, span_kind=AgentOpsSpanKind.OPERATION
                ),
                **span_attributes(details, redact_content=self._redact),
            },
        )
        span.end()  # only queued for the batch exporter: never blocks

    async def aclose(self) -> None:
        """End queued traces, send what is pending, shut down: at most ``close_timeout`` s."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        shutdown_share = self._close_timeout * _SHUTDOWN_SHARE

        def left(keep: float = 0.0) -> float:
            return max(0.0, deadline - loop.time() - keep)

        wait = left(shutdown_share)
        await call_with_cap(lambda: self._ender.close(wait), wait, "tutorbot-telemetry-end")
        wait = left(shutdown_share)
        flushed, _ = await call_with_cap(self._flush, wait, "tutorbot-telemetry-flush")
        if not flushed:
            self._health.record_failure(
                f"pending traces were not sent within {self._close_timeout:g} s at shutdown"
            )
        stopped, _ = await call_with_cap(self._shutdown, left(), "tutorbot-telemetry-shutdown")
        if not stopped:
            log.debug("agentops did not shut down in time; leaving it to exit")

    def _on_drop(self, dropped: int) -> None:
        self._health.record_failure(f"trace backlog full, {dropped} turn traces dropped")


def start_agentops_telemetry(
    *, api_key: str, tags: Sequence[str], redact_content: bool
) -> AgentOpsTelemetry:
    """Initialise agentops (once per process) and return the telemetry that uses it.

    agentops reads ``AGENTOPS_API_ENDPOINT`` and ``AGENTOPS_EXPORTER_ENDPOINT`` (the full
    OTLP traces URL) itself; ``AGENTOPS_LOG_LEVEL`` overrides the WARNING level set here.
    """
    health = ExportHealth()
    original_print = builtins.print
    try:
        with exporter_reporting_to(health):
            _on_fresh_thread(
                partial(
                    agentops.init,
                    api_key=api_key,
                    # True would start one never-ending trace that every later one joins.
                    auto_start_session=False,
                    # Its openai hooks patch builtins.__import__, cover only the sync
                    # Assistants classes, and parent their spans on the current context,
                    # i.e. outside our turn traces; model_call() makes those spans instead.
                    instrument_llm_calls=False,
                    log_session_replay_url=False,
                    log_level="WARNING",
                )
            )
    finally:
        # agentops swaps print() for one that also buffers everything printed, unbounded,
        # and uploads it when the first trace ends: message text must not leave that way.
        builtins.print = original_print
    provider = agentops_core.tracer.provider
    if not isinstance(provider, TracerProvider):
        raise RuntimeError("agentops did not set up tracing")
    return AgentOpsTelemetry(
        tracer=provider.get_tracer("tutorbot"),
        flush=provider.force_flush,
        shutdown=partial(_shut_down, provider),
        health=health,
        tags=tags,
        redact_content=redact_content,
    )


def _shut_down(provider: TracerProvider) -> None:
    # The provider first: that stops the batch processor at once, so the agentops
    # shutdown below (meter provider; its own atexit hook) never waits on an export.
    provider.shutdown()
    agentops_core.tracer.shutdown()


def _on_fresh_thread(fn: Callable[[], object]) -> None:
    """Run ``fn`` on a new thread and wait for it.

    agentops fetches its token as a task on the running event loop if there is one
    (left pending at shutdown, with an unclosed aiohttp session); from a thread
    without a loop it does that on a daemon thread of its own.
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, name="tutorbot-agentops-init")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
