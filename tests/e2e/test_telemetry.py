"""AgentOps telemetry end to end: the real bot (``python -m bot``, its own process, configured
only through the environment) against fake Slack, fake OpenAI and a fake AgentOps backend,
all served from the test's event loop.

What is checked: one trace per turn with the right tags, attributes and end state; model
calls as children of their turn; concurrent turns apart; replies, Slack acks and shutdown
unaffected by a hanging or failing backend; message text kept out on request; and with no
key, agentops never loaded and nothing written.

Measured numbers are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.e2e.bot_process import BotProcess
from tests.fakes.agentops_server import TOKEN, FakeAgentOps, Span
from tests.fakes.openai_model import FunctionCall, ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import block_actions
from tests.fakes.slack_server import FakeSlack, message_text

API_KEY = "00000000-0000-4000-8000-000000000000"
DEFAULT_TAGS = ["openai", "beta-assistants"]
FAILING = "AgentOps telemetry is failing"
PLACEHOLDER = re.compile(r"hourglass|Thinking…|Checking your answers")
MODEL_LATENCY = 0.5
ROOT_NAME = "turn.session"
QUIZ = {
    "title": "T",
    "questions": [
        {"question_text": "2+2?", "question_type": "MULTIPLE_CHOICE", "choices": ["3", "4"]}
    ],
}

# Bot settings a developer's .env could set (python -m bot loads /work/main/.env if there is
# one, without overriding): blank ones mean "unset", so the tests see only what they give.
_UNSET = (
    "SLACK_APP_TOKEN",
    "OPENAI_ASSISTANT_ID",
    "OPENAI_MODEL",
    "ASSISTANT_INSTRUCTIONS",
    "ASSISTANT_TOOLS",
    "SLASH_COMMAND",
    "MAX_FILE_MB",
    "AGENTOPS_API_KEY",
    "AGENTOPS_REDACT_CONTENT",
)

# The no-telemetry answer time, measured once (by the no-key test or on demand).
_baseline: list[float] = []


class Spawn(Protocol):
    def __call__(
        self,
        *,
        agentops: FakeAgentOps | None = ...,
        runtime: str = ...,
        name: str = ...,
        report_modules: bool = ...,
        **settings: str,
    ) -> Awaitable[BotProcess]: ...


@pytest.fixture
async def spawn(
    tmp_path: Path, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> AsyncIterator[Spawn]:
    """Start ``python -m bot`` in its own directory; AgentOps on when ``agentops`` is given."""
    started: list[BotProcess] = []

    async def start(
        *,
        agentops: FakeAgentOps | None = None,
        runtime: str = "responses",
        name: str = "bot",
        report_modules: bool = False,
        **settings: str,
    ) -> BotProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        env = dict.fromkeys(_UNSET, "")
        env.update(
            OPENAI_API_KEY="sk-test",
            OPENAI_BASE_URL=fake_openai.base_url,
            ASSISTANT_RUNTIME=runtime,
        )
        if agentops is not None:
            env.update(
                AGENTOPS_API_KEY=API_KEY,
                AGENTOPS_API_ENDPOINT=agentops.url,
                AGENTOPS_EXPORTER_ENDPOINT=agentops.traces_url,
            )
        env.update(settings)
        bot = BotProcess(workdir, fake_slack, env, report_modules=report_modules)
        started.append(bot)
        await bot.start()
        print(f"\n[{name}] listening {bot.started_in:.2f} s after spawn")
        return bot

    yield start
    for bot in started:
        await bot.kill()


@pytest.fixture
async def fake_agentops() -> AsyncIterator[FakeAgentOps]:
    async with FakeAgentOps() as fake:
        yield fake


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Answered:
    event: dict[str, Any]
    ack: float  # seconds until the bot answered Slack's HTTP request
    seconds: float  # from posting the mention to the settled answer in the thread
    text: str


def answers(slack: FakeSlack, channel: str, thread_ts: str) -> list[str]:
    """The bot's settled messages in a thread (progress placeholders left out)."""
    return [
        message_text(m)
        for m in slack.bot_messages(channel, thread_ts)
        if m["ts"] != thread_ts and not PLACEHOLDER.search(message_text(m))
    ]


async def ask(
    bot: BotProcess, text: str, *, expect: str, channel: str = "C1", timeout: float = 15.0
) -> Answered:
    """Mention the bot and wait for an answer containing ``expect``."""
    started = time.perf_counter()
    event, ack = await bot.mention(text, channel=channel)

    def found() -> str | None:
        return next((a for a in answers(bot.slack, channel, event["ts"]) if expect in a), None)

    answer = await bot.slack.wait_for(found, timeout=timeout)
    return Answered(event, ack, time.perf_counter() - started, answer)


def slow_echo(ctx: ModelContext) -> Reply:
    return Reply(text=f"Echo: {ctx.last_user_text}", latency=MODEL_LATENCY)


def roots(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s["name"] == ROOT_NAME and s["parent_span_id"] is None]


def has_roots(count: int) -> Callable[[list[Span]], bool]:
    return lambda spans: len(roots(spans)) >= count


def children(spans: list[Span], root: Span) -> list[Span]:
    return [s for s in spans if s["trace_id"] == root["trace_id"] and s is not root]


def check_turn_trace(
    spans: list[Span],
    root: Span,
    *,
    runtime: str,
    channel: str,
    thread_ts: str,
    turn_id: int,
    end_state: str = "Success",
) -> list[Span]:
    """The root's tags, attributes and end state; its children are model calls under it."""
    attrs = root["attributes"]
    assert attrs["agentops.span.kind"] == "session"
    assert attrs["agentops.tags"] == [
        *DEFAULT_TAGS,
        f"runtime:{runtime}",
        "team:T1",
        f"channel:{channel}",
    ]
    assert attrs["tutorbot.runtime"] == runtime
    assert attrs["tutorbot.team"] == "T1"
    assert attrs["tutorbot.channel"] == channel
    assert channel in attrs["tutorbot.thread_key"]
    assert attrs["tutorbot.thread_key"].endswith(thread_ts)
    assert attrs["tutorbot.turn_id"] == turn_id
    assert attrs["tutorbot.run_id"]
    assert attrs["agentops.session.end_state"] == end_state
    if end_state == "Success":
        assert root["status"].get("code") == "STATUS_CODE_OK"
    calls = children(spans, root)
    assert calls, f"no model calls in the trace of turn {turn_id}"
    for call in calls:
        assert call["parent_span_id"] == root["span_id"], call
        assert call["attributes"]["agentops.span.kind"] == "llm"
        assert "error.type" not in call["attributes"]
        assert root["start_ns"] <= call["start_ns"] <= call["end_ns"] <= root["end_ns"]
    waits = [c for c in calls if c["name"] == "stream_run"]
    assert waits and waits[-1]["attributes"]["tutorbot.run_id"] == attrs["tutorbot.run_id"]
    return calls


def failing_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if FAILING in line]


async def baseline_seconds(spawn: Spawn, fake_openai: FakeOpenAI) -> float:
    """How long a mention takes to be answered with AgentOps off (measured once)."""
    if not _baseline:
        bot = await spawn(name="baseline")
        fake_openai.model.push(slow_echo)
        _baseline.append((await ask(bot, "baseline question", expect="Echo:")).seconds)
        await bot.stop()
    return _baseline[0]


# --- 1. a plain turn -------------------------------------------------------------------


async def test_a_plain_turn_is_one_trace_with_its_model_calls(
    spawn: Spawn, fake_openai: FakeOpenAI, fake_agentops: FakeAgentOps
) -> None:
    bot = await spawn(agentops=fake_agentops)
    fake_openai.model.push(Reply(text="**x = 1**, because 3x = 3.", latency=MODEL_LATENCY))
    answered = await ask(bot, "Solve 3x + 11 = 14", expect="x = 1")
    spans = await fake_agentops.wait_for_spans(has_roots(1), timeout=10)
    stopped = await bot.stop()
    print(
        f"plain turn: ack {answered.ack * 1000:.1f} ms, answered in {answered.seconds:.2f} s, "
        f"SIGTERM -> exit {stopped:.2f} s"
    )

    [root] = roots(spans)
    assert len({s["trace_id"] for s in spans}) == 1
    calls = check_turn_trace(
        spans, root, runtime="responses", channel="C1", thread_ts=answered.event["ts"], turn_id=1
    )
    assert sorted(c["name"] for c in calls) == ["start_run", "stream_run"]
    assert root["attributes"]["tutorbot.input"] == "Solve 3x + 11 = 14"
    print("plain turn spans:", [(s["name"], s["parent_span_id"]) for s in spans])

    # agentops authenticated with the key and sent with the token it got.
    auth = next(r for r in fake_agentops.requests if r.path == "/v3/auth/token")
    assert json.loads(auth.body) == {"api_key": API_KEY}
    exports = [r for r in fake_agentops.requests if r.path == "/v1/traces"]
    assert exports and all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in exports)
    assert "/v4/logs/upload/" not in fake_agentops.paths()
    assert failing_lines(bot.log) == []
    assert not (bot.workdir / "agentops.log").exists()
    assert stopped < 5


# --- 2. a quiz turn and its continuation ------------------------------------------------


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for block in message.get("blocks") or []:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        found += [e for e in elements if isinstance(e, dict) and e.get("type") == "button"]
    return found


async def _click(bot: BotProcess, message: dict[str, Any], button: dict[str, Any]) -> float:
    payload = block_actions(
        action_id=button["action_id"], value=button["value"], message=message, user="U1"
    )
    result = await bot.sender.post_interaction(payload)
    assert result.status == 200, result.body
    return result.elapsed


@pytest.mark.parametrize("runtime", ["responses", "assistants", "chat"])
async def test_a_quiz_turn_and_its_continuation_are_traced(
    runtime: str, spawn: Spawn, fake_openai: FakeOpenAI, fake_agentops: FakeAgentOps
) -> None:
    bot = await spawn(agentops=fake_agentops, runtime=runtime)
    slack = bot.slack
    fake_openai.model.push(
        Reply(function_calls=[FunctionCall(name="display_quiz", arguments=json.dumps(QUIZ))]),
        Reply(text="Correct!"),
    )
    event, _ = await bot.mention("Quiz me on sums")
    thread_ts = event["ts"]

    def quiz_message() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in slack.bot_messages("C1", thread_ts)
                if any(b["action_id"].startswith("quiz_choice") for b in _buttons(m))
            ),
            None,
        )

    quiz = await slack.wait_for(quiz_message, timeout=15)
    [four] = [
        b
        for b in _buttons(quiz)
        if b["action_id"].startswith("quiz_choice") and b["text"]["text"] == "4"
    ]
    choice_ack = await _click(bot, quiz, four)

    def chosen() -> dict[str, Any] | None:
        stored = slack.find_message("C1", quiz["ts"])
        return stored if stored is not None and "✓ 4" in message_text(stored) else None

    quiz = await slack.wait_for(chosen)
    [submit] = [b for b in _buttons(quiz) if b["action_id"].startswith("quiz_submit")]
    submit_ack = await _click(bot, quiz, submit)
    await slack.wait_for(lambda: any("Correct!" in a for a in answers(slack, "C1", thread_ts)))

    spans = await fake_agentops.wait_for_spans(
        lambda got: any(s["name"] == "submit_tool_outputs" for s in got) and has_roots(1)(got),
        timeout=10,
    )
    stopped = await bot.stop()
    print(
        f"quiz ({runtime}): button acks {choice_ack * 1000:.1f} / {submit_ack * 1000:.1f} ms, "
        f"SIGTERM -> exit {stopped:.2f} s"
    )
    for span in sorted(spans, key=lambda s: s["start_ns"]):
        print(
            f"  trace {span['trace_id'][:8]} {span['name']:<20} "
            f"parent={span['parent_span_id']} "
            f"turn={span['attributes'].get('tutorbot.turn_id')} "
            f"run={span['attributes'].get('tutorbot.run_id')} "
            f"end={span['attributes'].get('agentops.session.end_state')}"
        )

    # One trace for the turn, its quiz continuation included: asking, then the answers
    # going back as tool outputs and the feedback run.
    [root] = roots(spans)
    children = check_turn_trace(
        spans, root, runtime=runtime, channel="C1", thread_ts=thread_ts, turn_id=1
    )
    assert {"start_run", "stream_run", "submit_tool_outputs"} <= {c["name"] for c in children}
    assert root["attributes"]["tutorbot.input"] == "Quiz me on sums"
    assert root["attributes"]["tutorbot.quiz_continuation_turn_id"] == 2
    assert root["attributes"]["agentops.session.end_state"] == "Success"
    assert len({s["trace_id"] for s in spans}) == 1
    assert failing_lines(bot.log) == []
    assert stopped < 5


# --- 3. concurrent turns ----------------------------------------------------------------


async def test_concurrent_turns_have_their_own_traces(
    spawn: Spawn, fake_openai: FakeOpenAI, fake_agentops: FakeAgentOps
) -> None:
    bot = await spawn(agentops=fake_agentops)
    fake_openai.model.push(slow_echo, slow_echo)
    a, b = await asyncio.gather(
        ask(bot, "question A", channel="C1", expect="Echo: question A"),
        ask(bot, "question B", channel="C2", expect="Echo: question B"),
    )
    # Stopped as soon as both turns have ended: what was not exported yet is flushed on the
    # way out, so every span is there once the process has exited.
    await bot.wait_idle()
    stopped = await bot.stop()
    spans = await fake_agentops.wait_for_spans(has_roots(2), timeout=1)
    print(
        f"concurrent: answered in {a.seconds:.2f} / {b.seconds:.2f} s, "
        f"SIGTERM -> exit {stopped:.2f} s"
    )

    by_channel = {root["attributes"]["tutorbot.channel"]: root for root in roots(spans)}
    assert set(by_channel) == {"C1", "C2"}
    one, two = by_channel["C1"], by_channel["C2"]
    assert one["trace_id"] != two["trace_id"]
    # The turns did overlap in time.
    assert one["start_ns"] < two["end_ns"] and two["start_ns"] < one["end_ns"]
    for root, answered, question in ((one, a, "question A"), (two, b, "question B")):
        channel = root["attributes"]["tutorbot.channel"]
        check_turn_trace(
            spans,
            root,
            runtime="responses",
            channel=channel,
            thread_ts=answered.event["ts"],
            turn_id=root["attributes"]["tutorbot.turn_id"],
        )
        assert root["attributes"]["tutorbot.input"] == question
    assert {one["attributes"]["tutorbot.turn_id"], two["attributes"]["tutorbot.turn_id"]} == {
        1,
        2,
    }
    assert one["attributes"]["tutorbot.run_id"] != two["attributes"]["tutorbot.run_id"]
    # Every span belongs to one of the two traces.
    assert {s["trace_id"] for s in spans} == {one["trace_id"], two["trace_id"]}
    assert stopped < 5


# --- 5. redaction -----------------------------------------------------------------------


async def test_redact_content_keeps_message_text_out_of_spans(
    spawn: Spawn, fake_openai: FakeOpenAI, fake_agentops: FakeAgentOps
) -> None:
    secret = "photosynthesis-SECRET-7f3a"
    bot = await spawn(agentops=fake_agentops, AGENTOPS_REDACT_CONTENT="true")
    fake_openai.model.push(slow_echo)
    answered = await ask(bot, f"explain {secret}", expect=secret)
    spans = await fake_agentops.wait_for_spans(has_roots(1), timeout=10)
    await bot.stop()

    [root] = roots(spans)
    check_turn_trace(
        spans, root, runtime="responses", channel="C1", thread_ts=answered.event["ts"], turn_id=1
    )
    assert "tutorbot.input" not in root["attributes"]
    for span in spans:
        for key, value in span["attributes"].items():
            assert secret not in json.dumps(value), (span["name"], key)
    assert all(secret.encode() not in r.body for r in fake_agentops.requests)


# --- 6. off -----------------------------------------------------------------------------


async def test_without_a_key_agentops_is_never_loaded(
    spawn: Spawn, fake_openai: FakeOpenAI
) -> None:
    # The real bot, through a wrapper that lists the agentops/OpenTelemetry modules it had
    # loaded when it exited (after serving a turn and shutting down).
    bot = await spawn(name="off", report_modules=True)
    fake_openai.model.push(slow_echo)
    answered = await ask(bot, "no telemetry please", expect="Echo: no telemetry please")
    stopped = await bot.stop()
    _baseline[:] = [answered.seconds]
    print(
        f"off: ack {answered.ack * 1000:.1f} ms, answered in {answered.seconds:.2f} s, "
        f"SIGTERM -> exit {stopped:.2f} s"
    )
    assert bot.loaded_modules() == []
    assert not (bot.workdir / "agentops.log").exists()
    assert sorted(p.name for p in bot.workdir.iterdir() if not p.name.startswith("bot.db")) == [
        "bot.log",
        "modules.txt",
    ]
    assert " bot.telemetry: " not in bot.log
    assert stopped < 5


# --- 4. a hanging or failing backend ----------------------------------------------------


@pytest.mark.parametrize("mode", ["hang", "500"])
async def test_a_hanging_or_failing_backend_never_delays_the_bot(
    mode: str, spawn: Spawn, fake_openai: FakeOpenAI
) -> None:
    baseline = await baseline_seconds(spawn, fake_openai)
    async with FakeAgentOps(mode) as fake:  # type: ignore[arg-type]
        bot = await spawn(agentops=fake, name=mode)
        fake_openai.model.push(slow_echo, slow_echo)
        first = await ask(bot, "first question", expect="Echo: first question")
        if mode == "500":
            # The first export fails while the bot serves: one line says so...
            await bot.slack.wait_for(lambda: failing_lines(bot.log), timeout=10)
        # ...and the next turn is as fast as ever.
        second = await ask(bot, "second question", expect="Echo: second question")
        stopped = await bot.stop()
    lines = failing_lines(bot.log)
    print(
        f"{mode}: baseline {baseline:.2f} s; answered in {first.seconds:.2f} / "
        f"{second.seconds:.2f} s; acks {first.ack * 1000:.1f} / {second.ack * 1000:.1f} ms; "
        f"SIGTERM -> exit {stopped:.2f} s; failing lines: {len(lines)}"
    )
    for answered in (first, second):
        assert answered.ack < 0.1
        assert answered.seconds < baseline + 2.0
    assert len(lines) == 1, bot.log
    assert API_KEY not in bot.log
    assert stopped < 5
    assert fake.spans == []
