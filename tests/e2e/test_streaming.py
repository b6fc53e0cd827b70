"""Answers stream into Slack as the model writes them (issue 8), end to end, both runtimes.

The fake model writes paced deltas; the fake Slack enforces the streaming rules (recipients,
one mode per stream, 12,000 characters a call, the ~5-minute lifetime on its clock, tier
limits when switched on). What a student would read is checked from the fake Slack's state.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from bot.domain import TurnStatus
from tests.e2e.conftest import Harness
from tests.e2e.test_quiz import choose, submit, wait_quizzes
from tests.fakes.openai_model import FunctionCall, Reply
from tests.fakes.slack_limits import RateLimit
from tests.fakes.slack_server import message_text

LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 121))  # ~4,300 chars


def streamed(h: Harness, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    """The bot's messages in the thread that were streamed."""
    return [
        m
        for m in h.slack.bot_messages(channel, thread_ts)
        if h.slack.stream_state(channel, m["ts"]) is not None
    ]


def shown(h: Harness, thread_ts: str, channel: str = "C1") -> str:
    """Everything the bot's replies in a thread say, in order, as one text."""
    return "\n".join(
        message_text(m) for m in h.slack.bot_messages(channel, thread_ts) if m["ts"] != thread_ts
    )


def concatenated(h: Harness, thread_ts: str, channel: str = "C1") -> str:
    """The replies' texts joined as they are (an answer continued in a new message may
    be cut anywhere, even inside a word)."""
    return "".join(
        message_text(m) for m in h.slack.bot_messages(channel, thread_ts) if m["ts"] != thread_ts
    )


def calls(h: Harness, method: str, **args: Any) -> list[Any]:
    return [
        c
        for c in h.slack.calls_to(method)
        if all(c.args.get(k) == v for k, v in args.items()) and c.status == 200
    ]


async def test_a_long_answer_is_visible_early_and_complete_once(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.2, write_time=3.0))
    event = await h.mention("explain balancing equations")

    def partial() -> bool:
        return any(
            h.slack.is_streaming("C1", m["ts"]) and "Step 1:" in message_text(m)
            for m in streamed(h, event["ts"])
        )

    await h.slack.wait_for(partial, timeout=5)
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert answer.count("Step 1:") == 1 and answer.count("Step 120:") == 1
    assert " ".join(answer.split()) == LONG
    [message] = streamed(h, event["ts"])
    appends = calls(h, "chat.appendStream", ts=message["ts"])
    assert len(appends) >= 2, "the answer grew while the model wrote it"
    # Always in standard Markdown chunks, with both recipients (required in channels).
    [start] = calls(h, "chat.startStream")
    assert start.args["recipient_user_id"] == "U1" and start.args["recipient_team_id"] == "T1"


async def test_status_indicator_replaces_the_thinking_message(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(text="x = 1", first_token_latency=1.0))
    event = await h.mention("solve 3x + 11 = 14")
    await h.slack.wait_for(lambda: h.slack.status_of("C1", event["ts"]), timeout=5)
    assert h.slack.bot_messages("C1", event["ts"]) == []  # no "Thinking…" message
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert "x = 1" in answer
    assert h.slack.status_of("C1", event["ts"]) is None  # cleared by the answer


async def test_a_dropped_model_stream_resumes_without_gaps_or_repeats(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=1.5))
    h.openai.drop_stream_after(12)
    event = await h.mention("explain it all")
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert " ".join(answer.split()) == LONG
    if h.runtime == "responses":
        resumed = [r for r in h.openai.requests if r.query.get("starting_after")]
        assert resumed, "the stream was picked up where it broke, not replayed"
        assert int(resumed[0].query["starting_after"][0]) >= 10


async def test_a_restart_mid_stream_neither_loses_nor_repeats_text(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=4.0))
    if h.runtime == "chat":  # a chat server keeps nothing: the answer is written again
        h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=2.0))
    event = await h.mention("a long one please")
    await h.slack.wait_for(lambda: "Step 20:" in shown(h, event["ts"]), timeout=10)
    await h.restart()
    await h.slack.wait_for(
        lambda: (
            "Step 120:" in shown(h, event["ts"])
            and not any(h.slack.is_streaming("C1", m["ts"]) for m in streamed(h, event["ts"]))
        ),
        timeout=20,
    )
    await h.settle()
    assert concatenated(h, event["ts"]) == LONG


async def test_a_stream_slack_closed_is_finished_and_the_answer_goes_on(
    harness: Harness,
) -> None:
    h = harness
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=3.0))
    event = await h.mention("explain")
    await h.slack.wait_for(lambda: "Step 5:" in shown(h, event["ts"]), timeout=5)
    [first] = streamed(h, event["ts"])
    h.slack.clock.advance(301)  # Slack closes streams ~5 minutes after they start
    await h.slack.wait_for(lambda: "Step 120:" in shown(h, event["ts"]), timeout=10)
    await h.settle()
    assert concatenated(h, event["ts"]) == LONG
    # The closed stream was finished with chat.update; the rest came in a new message.
    assert calls(h, "chat.update", ts=first["ts"])
    assert len(h.answers("C1", event["ts"])) >= 2


async def test_a_stream_the_student_stopped_stays_as_they_saw_it(harness: Harness) -> None:
    """Slack answers ``stopped_by_user`` once the student pressed Stop (even before the
    ``agent_session_stopped`` event arrives): the answer ends there, nothing is added, and
    the run is cancelled (issue 9)."""
    h = harness
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=4.0))
    event = await h.mention("explain")
    await h.slack.wait_for(lambda: streamed(h, event["ts"]), timeout=5)
    [first] = streamed(h, event["ts"])
    h.slack.stop_stream_by_user("C1", first["ts"])
    seen = message_text(h.slack.find_message("C1", first["ts"]) or {})
    assert h.bot is not None
    store = h.bot.store

    async def cancelled() -> bool:
        return bool(await store.list_turns(statuses=[TurnStatus.CANCELLED]))

    await h.slack.wait_for(cancelled, timeout=10)
    await asyncio.sleep(0.5)
    await h.settle()
    assert [m["ts"] for m in h.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]] == [
        first["ts"]
    ]
    assert message_text(h.slack.find_message("C1", first["ts"]) or {}) == seen
    assert "Step 120:" not in seen


async def test_rate_limited_appends_never_lose_text(harness: Harness) -> None:
    h = harness
    h.slack.enforce_rate_limits({"chat.appendStream": RateLimit(1, burst=1)})
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=2.0))
    event = await h.mention("explain")
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert " ".join(answer.split()) == LONG
    assert [c for c in h.slack.calls_to("chat.appendStream") if c.status == 429]


async def test_a_channel_that_refuses_streams_gets_an_edited_message(harness: Harness) -> None:
    h = harness
    h.slack.refuse_streaming("C1")
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=3.0))
    event = await h.mention("explain")
    await h.slack.wait_for(lambda: "Step 120:" in shown(h, event["ts"]), timeout=10)
    await h.settle()
    [answer] = h.answers("C1", event["ts"])
    assert " ".join(answer.split()) == LONG
    [message] = [m for m in h.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert calls(h, "chat.update", ts=message["ts"]), "it grew by edits"


async def test_a_quiz_called_mid_answer_keeps_what_was_said(harness: Harness) -> None:
    h = harness
    quiz = {
        "title": "Check",
        "questions": [
            {"question_text": "2 + 2?", "question_type": "MULTIPLE_CHOICE", "choices": ["3", "4"]}
        ],
    }
    h.openai.model.push(
        Reply(
            text="Let's check what you know first.",
            function_calls=[FunctionCall(name="display_quiz", arguments=json.dumps(quiz))],
        ),
        Reply(text="Well done, 4 is right.", first_token_latency=0.1, write_time=0.5),
    )
    event = await h.mention("quiz me")
    said, posted_quiz = await h.wait_answers("C1", event["ts"], 2)
    assert "check what you know" in said
    assert "2 + 2?" in posted_quiz
    [quiz_message] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz_message, "4")
    await submit(h, quiz_message)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "Well done" in answers[-1]


async def test_the_status_is_cleared_after_a_failure(harness: Harness) -> None:
    h = harness
    path = {"responses": "/responses", "assistants": "/runs"}.get(h.runtime, "/chat/completions")
    h.openai.fail_next(path, status=500, count=4, method="POST")
    event = await h.mention("hello?")
    [note] = await h.wait_answers("C1", event["ts"], 1)
    assert "couldn't reach the model service" in note
    assert h.slack.status_of("C1", event["ts"]) is None


async def test_many_answers_at_once_under_slack_tier_limits(harness: Harness) -> None:
    """A class of 30 asking at once in one workspace: Slack's stream budget (~20 starts a
    minute) does not silence anyone; every answer arrives, whole, exactly once."""
    h = harness
    h.slack.enforce_rate_limits()
    h.openai.model.default = lambda ctx: Reply(
        text=f"Answer to {ctx.last_user_text}: " + "details " * 40,
        first_token_latency=0.5,
        write_time=1.0,
    )
    events = await asyncio.gather(
        *(h.mention(f"question {i}", channel=f"C{i % 3}", user=f"U{i}") for i in range(30))
    )
    for event in events:
        [answer] = await h.wait_answers(event["channel"], event["ts"], 1, timeout=30)
        assert answer.count(f"Answer to {event['text'].split('> ')[1]}:") == 1
    assert h.slack.rate_limiter is not None


@pytest.mark.parametrize("runtime", ["responses"])  # the Responses service's own bug
async def test_a_response_stuck_in_queued_is_cancelled_and_the_student_told(
    harness: Harness,
) -> None:
    h = harness
    assert h.bot is not None
    h.bot.runtime.queued_limit = 1.0  # type: ignore[attr-defined]
    h.openai.stick_next_in_queued()
    event = await h.mention("hello")
    [note] = await h.wait_answers("C1", event["ts"], 1, timeout=20)
    assert "never started" in note
    cancels = [r for r in h.openai.requests if r.path.endswith("/cancel")]
    assert cancels
    # The next message works normally.
    h.openai.model.push(Reply(text="Hi again"))
    await h.say("hello again", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Hi again" in answers[-1]


@pytest.mark.parametrize("runtime", ["responses", "assistants"])  # chat servers all stream
async def test_a_server_that_cannot_stream_is_polled(harness: Harness) -> None:
    h = harness
    h.openai.streaming_supported = False
    h.openai.model.push(Reply(text="x = 1"), Reply(text="y = 2"))
    first = await h.mention("solve x")
    [answer] = await h.wait_answers("C1", first["ts"], 1)
    assert "x = 1" in answer
    second = await h.mention("solve y")
    [answer] = await h.wait_answers("C1", second["ts"], 1)
    assert "y = 2" in answer
    # Only the first request tried to stream; from then on the bot polled.
    streamed_requests = [r for r in h.openai.requests if (r.json or {}).get("stream")]
    assert len(streamed_requests) == 1
    h.openai.violations.clear()  # the refused stream request was recorded as one


async def test_text_written_while_a_full_message_is_ended_keeps_its_place(
    harness: Harness,
) -> None:
    """An answer longer than one message continues in the next; the words the model writes
    while Slack takes its time ending the full message come after the ones carried over,
    never before them (the order was once scrambled there)."""
    h = harness
    code = "\n".join(f"print({i} * {i})  # line {i}" for i in range(900))
    answer = "Here is the program:\n\n```python\n" + code + "\n```\n\nAnd that's all."
    h.openai.model.push(Reply(text=answer, first_token_latency=0.1, write_time=3.0))
    h.slack.delay_next("chat.stopStream", 0.6, count=5)
    event = await h.mention("write a long program")
    await h.slack.wait_for(lambda: "that's all" in shown(h, event["ts"]), timeout=20)
    await h.settle()
    text = shown(h, event["ts"])
    numbers = [int(n) for n in re.findall(r"# line (\d+)", text)]
    assert numbers == list(range(900)), "every line once, in order"
    for m in h.slack.bot_messages("C1", event["ts"]):
        if m["ts"] != event["ts"]:
            assert message_text(m).count("```") % 2 == 0, "each message's code fences balanced"


@pytest.mark.parametrize(
    ("lines", "stop_delay"),
    [(250, 0.2), (600, 2.0)],  # the text written meanwhile: a little, or past a message
    ids=["fits", "overflows"],
)
async def test_a_message_ended_mid_answer_by_a_dropped_append_keeps_its_code_whole(
    harness: Harness, lines: int, stop_delay: float
) -> None:
    """An append whose connection drops (it may have gone through) ends the message by
    rewriting it whole, mid-answer and mid-code. That message gets its code fence closed
    and the next reopens it; the words the model writes meanwhile must not swell it past
    one message either. Every line once, in order (the fence was once left open, and the
    text written meanwhile went into one oversized update)."""
    h = harness
    code = "\n".join(f"print({i} * {i})  # line {i}" for i in range(lines))
    answer = "Here is the program:\n\n```python\n" + code + "\n```\n\nAnd that's all."
    h.openai.model.push(Reply(text=answer, first_token_latency=0.1, write_time=1.5))
    h.slack.disconnect_next("chat.appendStream")
    h.slack.delay_next("chat.stopStream", stop_delay)  # the quiet stop before the rewrite
    event = await h.mention("write a long program")
    await h.slack.wait_for(lambda: "that's all" in shown(h, event["ts"]), timeout=20)
    await h.settle()
    assert h.slack.faults_pending("chat.appendStream") == 0, "the append did drop"
    text = shown(h, event["ts"])
    numbers = [int(n) for n in re.findall(r"# line (\d+)", text)]
    assert numbers == list(range(lines)), "every line once, in order"
    replies = [m for m in h.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert len(replies) >= 2
    for m in replies:
        assert len(message_text(m)) <= 12_000
        assert message_text(m).count("```") % 2 == 0, "each message's code fences balanced"
