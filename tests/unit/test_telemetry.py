"""Telemetry: off means not even imported; on means one trace per turn that never slows a turn.

agentops keeps process-wide state (tracer provider, client, atexit hooks), so every
scenario that turns it on runs in a fresh interpreter: this module doubles as the
scenario runner (``python -m tests.unit.test_telemetry <scenario>``), talking to a
``FakeAgentOps`` served from the test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.telemetry import DEFAULT_TAGS, create_telemetry
from bot.telemetry._attributes import attribute_key, is_content, span_attributes, turn_tags
from bot.telemetry._export_health import ExportHealth
from bot.telemetry._span_ender import SpanEnder
from tests.fakes.agentops_server import TOKEN, FakeAgentOps, Span

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "00000000-0000-4000-8000-000000000000"
SECRET = "SECRET-TEXT"
FAILING = "AgentOps telemetry is failing"


# --- off: nothing is imported ------------------------------------------------------


def test_without_a_key_agentops_is_never_imported(tmp_path: Path) -> None:
    code = """
import sys, threading
from bot.telemetry import create_telemetry, NoopTelemetry
for key in (None, ""):
    telemetry = create_telemetry(api_key=key)
    assert isinstance(telemetry, NoopTelemetry), telemetry
    trace = telemetry.start_turn(runtime="r", team="T", channel="C", thread_key="k", turn_id=1)
    with trace.model_call("responses.create", model="m"):
        pass
    trace.end("Success")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("agentops", "opentelemetry"))
assert not loaded, loaded
assert threading.active_count() == 1, threading.enumerate()
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_when_agentops_cannot_start_the_bot_runs_without_it(tmp_path: Path) -> None:
    # The user asked for ./agentops.log, and it cannot be written: agentops.init raises.
    (tmp_path / "agentops.log").mkdir()
    code = f"""
import logging
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from bot.telemetry import create_telemetry, NoopTelemetry
telemetry = create_telemetry(api_key={API_KEY!r})
assert isinstance(telemetry, NoopTelemetry), telemetry
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_child_env(AGENTOPS_LOGGING_TO_FILE="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("WARNING bot.telemetry: AgentOps telemetry is off")
    assert API_KEY not in result.stderr


# --- pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "content"),
    [
        ("run_id", "tutorbot.run_id", False),
        ("runtime", "tutorbot.runtime", False),
        ("model", "gen_ai.request.model", False),
        ("gen_ai.usage.input_tokens", "gen_ai.usage.input_tokens", False),
        ("input", "tutorbot.input", True),
        ("text", "tutorbot.text", True),
        ("instructions", "tutorbot.instructions", True),
        ("gen_ai.prompt.0.content", "gen_ai.prompt.0.content", True),
        ("gen_ai.completion", "gen_ai.completion", True),
    ],
)
def test_attribute_names_and_content(key: str, name: str, content: bool) -> None:
    assert attribute_key(key) == name
    assert is_content(name) is content


def test_span_attributes_convert_and_redact() -> None:
    given = {"run_id": "run_1", "turn_id": 3, "input": "hi", "none": None, "ids": ("a", 1)}
    assert span_attributes(given, redact_content=False) == {
        "tutorbot.run_id": "run_1",
        "tutorbot.turn_id": 3,
        "tutorbot.input": "hi",
        "tutorbot.ids": ["a", "1"],
    }
    assert "tutorbot.input" not in span_attributes(given, redact_content=True)


def test_turn_tags() -> None:
    tags = turn_tags(("openai", "beta-assistants"), runtime="responses", team="T1", channel="C1")
    assert tags == ["openai", "beta-assistants", "runtime:responses", "team:T1", "channel:C1"]


def test_export_health_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    health = ExportHealth()
    with caplog.at_level(logging.INFO, logger="bot.telemetry"):
        for _ in range(5):
            health.record_failure("HTTP 500 from x")
        health.record_success()
        health.record_success()
        health.record_failure("HTTP 401 from x")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "WARNING"]
    assert lines[0][1].startswith(f"{FAILING}: HTTP 500 from x")
    assert health.failures == 6


def test_span_ender_drops_and_counts_when_its_backlog_is_full() -> None:
    busy, gate = threading.Event(), threading.Event()
    dropped: list[int] = []
    ender = SpanEnder(capacity=2, on_drop=dropped.append)
    ran: list[int] = []

    def occupy() -> None:
        busy.set()
        gate.wait()

    ender.submit(occupy)
    assert busy.wait(2)
    results = [ender.submit(partial(ran.append, i)) for i in range(4)]
    assert results == [True, True, False, False]
    assert ender.dropped == 2 and dropped == [1, 2]
    gate.set()
    assert ender.close(timeout=2)
    assert ran == [0, 1]


# --- on: in-process, over a plain OpenTelemetry tracer --------------------------------


async def test_concurrent_turns_keep_their_own_traces_in_process() -> None:
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
    ids = await asyncio.gather(_plain_turn(telemetry), _quiz_turn(telemetry))
    await telemetry.aclose()
    spans = [_readable(span) for span in exporter.get_finished_spans()]
    _check_turns(spans, ids, redacted=False)
    # Closed: later turns are no-ops rather than errors.
    telemetry.start_turn(runtime="r", team="T", channel="C", thread_key="k", turn_id=9).end("Fail")


# --- on: end to end against FakeAgentOps, one interpreter per scenario ---------------


@dataclass
class Run:
    result: dict[str, Any]
    stderr: str
    exited_at: float

    @property
    def exit_s(self) -> float:
        """From aclose() returning to the process having exited."""
        return self.exited_at - self.result["closed_at"]

    def failing_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if FAILING in line]


async def test_turns_arrive_with_tags_attributes_and_end_states(tmp_path: Path) -> None:
    async with FakeAgentOps() as fake:
        run = await _run_scenario("turns", tmp_path, fake.url, fake.traces_url)
        spans = await fake.wait_for_spans(lambda spans: len(spans) >= 6)
    _check_turns(spans, run.result["turns"], redacted=False)
    assert "/v3/auth/token" in fake.paths()
    auth = next(r for r in fake.requests if r.path == "/v3/auth/token")
    assert json.loads(auth.body) == {"api_key": API_KEY}
    traces = [r for r in fake.requests if r.path == "/v1/traces"]
    assert traces and traces[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    assert traces[-1].headers["Content-Type"] == "application/x-protobuf"
    assert "/v4/logs/upload/" not in fake.paths()  # print() is not captured
    assert run.failing_lines() == []
    assert not (tmp_path / "agentops.log").exists()
    # Blocking would cost the export timeout (seconds); the bounds leave room for a busy
    # shared machine. The real numbers are printed, and measured in bench/.
    assert max(run.result["end_ms"]) < 500


async def test_redact_content_keeps_message_text_out(tmp_path: Path) -> None:
    async with FakeAgentOps() as fake:
        run = await _run_scenario("turns-redacted", tmp_path, fake.url, fake.traces_url)
        spans = await fake.wait_for_spans(lambda spans: len(spans) >= 6)
    _check_turns(spans, run.result["turns"], redacted=True)
    assert SECRET not in json.dumps(spans)
    assert all(SECRET.encode() not in r.body for r in fake.requests)


@pytest.mark.parametrize("mode", ["hang", "500", "401", "unreachable"])
async def test_a_failing_backend_never_slows_turns(mode: str, tmp_path: Path) -> None:
    if mode == "unreachable":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        run = await _run_scenario("failing", tmp_path, url, f"{url}/v1/traces")
    else:
        async with FakeAgentOps(mode) as fake:  # type: ignore[arg-type]
            run = await _run_scenario("failing", tmp_path, fake.url, fake.traces_url)
    result = run.result
    print(
        f"\n{mode}: end() {max(result['end_ms']):.2f} ms, worst loop lag "
        f"{result['max_lag_ms']:.1f} ms, aclose {result['aclose_s']:.2f} s, "
        f"exit after aclose {run.exit_s:.2f} s"
    )
    # A blocked loop would lag by the export timeout (seconds): generous bounds, so that
    # a busy shared machine does not fail this; the numbers are printed above.
    assert max(result["end_ms"]) < 500
    assert result["max_lag_ms"] < 1000
    assert result["aclose_s"] <= 4
    assert run.exit_s < 2  # nor is the process exit held up by exports
    assert len(run.failing_lines()) == 1, run.stderr


# --- scenario helpers ------------------------------------------------------------------


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTOPS_", "OTEL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


async def _run_scenario(name: str, cwd: Path, api_url: str, traces_url: str) -> Run:
    env = _child_env(AGENTOPS_API_ENDPOINT=api_url, AGENTOPS_EXPORTER_ENDPOINT=traces_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.unit.test_telemetry", name,
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    exited_at = time.time()
    stderr = err.decode()
    assert process.returncode == 0, stderr
    return Run(json.loads(out.decode().strip().splitlines()[-1]), stderr, exited_at)


def _readable(span: Any) -> Span:
    """An SDK ReadableSpan in the fake's span-dict shape."""
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "attributes": {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in span.attributes.items()
        },
    }


def _check_turns(spans: list[Span], ids: Sequence[dict[str, Any]], *, redacted: bool) -> None:
    """Two overlapping turns: their own trace each, children under the right root."""
    plain, quiz = ids
    assert plain["trace_id"] != quiz["trace_id"]
    by_trace: dict[str, list[Span]] = {}
    for span in spans:
        by_trace.setdefault(span["trace_id"], []).append(span)
    assert set(by_trace) == {plain["trace_id"], quiz["trace_id"]}

    expected = {
        plain["trace_id"]: (plain, "Success", ["responses.create"], "responses", "T1", "C1"),
        quiz["trace_id"]: (
            quiz,
            "Fail",
            ["start_run", "submit_tool_outputs", "submit_tool_outputs"],
            "assistants",
            "T2",
            "C2",
        ),
    }
    for trace_id, (turn, end_state, calls, runtime, team, channel) in expected.items():
        roots = [s for s in by_trace[trace_id] if s["parent_span_id"] is None]
        assert len(roots) == 1
        root = roots[0]
        assert root["span_id"] == turn["span_id"]
        assert root["name"] == "turn.session"
        attrs = root["attributes"]
        assert attrs["agentops.span.kind"] == "session"
        assert attrs["agentops.session.end_state"] == end_state
        assert attrs["agentops.tags"] == [
            *DEFAULT_TAGS,
            f"runtime:{runtime}",
            f"team:{team}",
            f"channel:{channel}",
        ]
        assert attrs["tutorbot.thread_key"] == f"{team}:{channel}:1.1"
        assert attrs["tutorbot.turn_id"] == turn["turn_id"]
        assert attrs["tutorbot.run_id"] == turn["run_id"]
        assert ("tutorbot.input" in attrs) is not redacted
        children = [s for s in by_trace[trace_id] if s["parent_span_id"] is not None]
        assert sorted(s["name"] for s in children) == sorted(calls)
        assert all(s["parent_span_id"] == root["span_id"] for s in children)
        assert all(s["attributes"]["agentops.span.kind"] == "llm" for s in children)
        for child in children:
            assert ("tutorbot.input" in child["attributes"]) is not redacted
        failed = [s for s in children if "error.type" in s["attributes"]]
        assert [s["attributes"]["error.type"] for s in failed] == (
            ["RuntimeError"] if trace_id == quiz["trace_id"] else []
        )
    if not redacted:
        assert SECRET in json.dumps(spans)


async def _plain_turn(telemetry: Any, end_ms: list[float] | None = None) -> dict[str, Any]:
    trace = telemetry.start_turn(
        runtime="responses",
        team="T1",
        channel="C1",
        thread_key="T1:C1:1.1",
        turn_id=1,
        text=f"What is photosynthesis? {SECRET}",
    )
    await asyncio.sleep(0.01)
    with trace.model_call("responses.create", model="gpt-4o-mini", input=f"{SECRET} prompt"):
        await asyncio.sleep(0.05)
    trace.set_attribute("run_id", "resp_1")
    _end(trace, "Success", end_ms)
    return _ids(trace, turn_id=1, run_id="resp_1")


async def _quiz_turn(telemetry: Any, end_ms: list[float] | None = None) -> dict[str, Any]:
    """A quiz turn: a run plus its tool-output continuations; the last one fails."""
    trace = telemetry.start_turn(
        runtime="assistants",
        team="T2",
        channel="C2",
        thread_key="T2:C2:1.1",
        turn_id=2,
        text=f"Quiz me on cells {SECRET}",
    )
    with trace.model_call("start_run", runtime="assistants", input=SECRET):
        await asyncio.sleep(0.02)
    trace.set_attribute("run_id", "run_2")
    with trace.model_call("submit_tool_outputs", run_id="run_2", input=SECRET):
        await asyncio.sleep(0.03)
    try:
        with trace.model_call("submit_tool_outputs", run_id="run_2", input=SECRET):
            await asyncio.sleep(0.01)
            raise RuntimeError(f"run expired {SECRET}")
    except RuntimeError:
        pass
    trace.set_attribute("output", SECRET)
    _end(trace, "Fail", end_ms)
    trace.end("Success")  # ignored: the first end wins
    return _ids(trace, turn_id=2, run_id="run_2")


def _end(trace: Any, outcome: str, end_ms: list[float] | None) -> None:
    started = time.perf_counter()
    trace.end(outcome)
    if end_ms is not None:
        end_ms.append((time.perf_counter() - started) * 1000)


def _ids(trace: Any, *, turn_id: int, run_id: str) -> dict[str, Any]:
    context = trace.span.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "turn_id": turn_id,
        "run_id": run_id,
    }


class _LoopLag:
    """The worst lateness of a 5 ms ticker: how long the loop was ever blocked."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
        return self.worst * 1000

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - before - 0.005)


async def _scenario(name: str) -> dict[str, Any]:
    from bot.telemetry.agentops_telemetry import AgentOpsTelemetry

    telemetry = create_telemetry(api_key=API_KEY, redact_content=name == "turns-redacted")
    assert isinstance(telemetry, AgentOpsTelemetry), telemetry
    lag = _LoopLag()
    lag.start()
    end_ms: list[float] = []
    turns = list(
        await asyncio.gather(_plain_turn(telemetry, end_ms), _quiz_turn(telemetry, end_ms))
    )
    if name == "failing":
        await asyncio.sleep(1.5)  # the batch processor tries (and fails) to export meanwhile
        turns.append(await _plain_turn(telemetry, end_ms))
    started = time.perf_counter()
    await telemetry.aclose()
    return {
        "turns": turns,
        "end_ms": end_ms,
        "max_lag_ms": lag.stop(),
        "aclose_s": time.perf_counter() - started,
        "closed_at": time.time(),
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout.write(json.dumps(asyncio.run(_scenario(sys.argv[1]))) + "\n")
