"""tutorbot as a Slack agent app (issue 9), end to end: the Messages tab's greeting and
suggested prompts, DMs answered in their own threads with a title, the legacy assistant
container, the viewing context given to the model, and Stop.

Events are the shapes Slack sends (tests/fakes/slack_payloads.py); what students see is read
from the fake Slack, what the model was asked from the fake model service.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.app import TutorBot
from bot.config import load_settings
from bot.domain import TurnStatus
from tests.e2e.conftest import SIGNING_SECRET, Harness
from tests.fakes.openai_model import Reply
from tests.fakes.slack_agent_methods import stop_session
from tests.fakes.slack_payloads import (
    SlackSender,
    app_context_changed,
    app_home_opened,
    assistant_thread_context_changed,
    assistant_thread_started,
    dm_channel,
    dm_message,
    next_ts,
)
from tests.fakes.slack_server import message_text

LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 121))


async def deliver(h: Harness, event: dict[str, Any], **retry: Any) -> None:
    assert h.sender is not None
    result = await h.sender.post_event(event, **retry)
    assert result.status == 200, result.body


def greetings(h: Harness, user: str) -> list[dict[str, Any]]:
    return [
        m for m in h.slack.bot_messages(dm_channel(user), None) if "I'm tutorbot" in message_text(m)
    ]


def shown(h: Harness, channel: str, thread_ts: str) -> str:
    return "".join(
        message_text(m) for m in h.slack.bot_messages(channel, thread_ts) if m["ts"] != thread_ts
    )


# -- the Messages tab -----------------------------------------------------------------------


async def test_the_messages_tab_greets_each_student_once_with_suggested_prompts(
    harness: Harness,
) -> None:
    h = harness
    for _ in range(3):
        await deliver(h, app_home_opened(user="U1", tab="messages"))
    await deliver(h, app_home_opened(user="U2", tab="messages"))
    await h.settle()
    await h.slack.wait_for(lambda: len(greetings(h, "U2")) == 1, timeout=5)
    assert len(greetings(h, "U1")) == 1, "greeted once, not on every open"
    assert "<@U1>" in message_text(greetings(h, "U1")[0])
    prompts = [p for p in h.slack.suggested_prompts if p["channel_id"] == dm_channel("U1")]
    assert len(prompts) == 1 and prompts[0]["shown"], "agent apps set prompts without thread_ts"
    assert [p["title"] for p in prompts[0]["prompts"]][:2] == [
        "Quiz me on fractions",
        "Solve 3x + 11 = 14 step by step",
    ]


async def test_a_restart_does_not_greet_again(harness: Harness) -> None:
    h = harness
    await deliver(h, app_home_opened(user="U1"))
    await h.settle()
    await h.restart()
    await deliver(h, app_home_opened(user="U1"))
    await h.settle()
    assert len(greetings(h, "U1")) == 1


@pytest.mark.parametrize("runtime", ["responses"], indirect=True)
async def test_a_greeting_slack_refused_is_sent_on_the_next_open(harness: Harness) -> None:
    h = harness
    h.slack.fail_next("chat.postMessage", "internal_error", status=500)
    await deliver(h, app_home_opened(user="U1"))
    await h.settle()
    await h.slack.wait_for(lambda: h.slack.faults_pending("chat.postMessage") == 0, timeout=5)
    await h.settle()
    assert not greetings(h, "U1")
    await deliver(h, app_home_opened(user="U1"))
    await h.slack.wait_for(lambda: len(greetings(h, "U1")) == 1, timeout=5)
    await deliver(h, app_home_opened(user="U1"))
    await h.settle()
    assert len(greetings(h, "U1")) == 1, "then greeted once"


@pytest.mark.parametrize("runtime", ["responses"], indirect=True)
async def test_a_top_level_dm_is_answered_in_its_own_thread_once_with_a_title(
    harness: Harness,
) -> None:
    h = harness
    h.openai.model.push(Reply(text="x = 1"), Reply(text="The area is 12."))
    first = dm_message(text="Solve 3x + 11 = *14* step by step", ts=next_ts())
    await deliver(h, first)
    await deliver(h, first, retry_num=1, retry_reason="http_timeout")
    channel = dm_channel("U1")
    assert await h.wait_answers(channel, first["ts"], 1) == ["x = 1"]
    second = dm_message(text="What is the area of a 3 by 4 rectangle?", ts=next_ts())
    await deliver(h, second)
    assert await h.wait_answers(channel, second["ts"], 1) == ["The area is 12."]
    await h.settle()
    assert h.answers(channel, first["ts"]) == ["x = 1"], "each DM answered once, in its thread"
    titles = {t["thread_ts"]: t["title"] for t in h.slack.titles}
    assert titles == {
        first["ts"]: "Solve 3x + 11 = 14 step by step",
        second["ts"]: "What is the area of a 3 by 4 rectangle?",
    }
    follow_up = dm_message(text="and 2x = 8?", ts=next_ts(), thread_ts=first["ts"])
    h.openai.model.push(Reply(text="x = 4"))
    await deliver(h, follow_up)
    assert await h.wait_answers(channel, first["ts"], 2) == ["x = 1", "x = 4"]
    assert len(h.slack.titles) == 2, "a follow-up in a thread does not rename it"


# -- the student's viewing context ------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["responses", "chat"], indirect=True)
async def test_the_channel_a_student_views_is_a_short_note_to_the_model(
    harness: Harness,
) -> None:
    h = harness
    h.slack.add_message(
        {
            "type": "message",
            "channel": "C7",
            "user": "U9",
            "text": "secret homework answers",
            "ts": next_ts(),
        }
    )
    await deliver(h, app_home_opened(user="U1", context_channel="C7"))
    await deliver(h, app_context_changed(user="U1", context_channel="C8"))
    await h.settle()
    h.openai.model.push(Reply(text="Sure."))
    question = dm_message(text="help me with this week's topic", ts=next_ts())
    await deliver(h, question)
    await h.wait_answers(dm_channel("U1"), question["ts"], 1)
    [asked] = [m for m in h.openai.user_messages() if "this week's topic" in m]
    assert "#channel-c8" in asked and "#channel-c7" not in asked, "the latest context counts"
    assert "secret homework" not in asked, "never messages the student did not share"
    assert not h.slack.calls_to("conversations.history")


@pytest.mark.parametrize("runtime", ["responses"], indirect=True)
async def test_no_context_no_note(harness: Harness) -> None:
    h = harness
    await deliver(h, app_context_changed(user="U1", context_channel=None))
    h.openai.model.push(Reply(text="Sure."))
    question = dm_message(text="what is a prime?", ts=next_ts())
    await deliver(h, question)
    await h.wait_answers(dm_channel("U1"), question["ts"], 1)
    [asked] = [m for m in h.openai.user_messages() if "prime" in m]
    assert "viewing" not in asked


# -- the legacy assistant container -----------------------------------------------------------


@pytest.mark.parametrize("runtime", ["responses", "assistants"], indirect=True)
async def test_the_legacy_assistant_container_keeps_working(harness: Harness) -> None:
    h = harness
    h.slack.app_surface = "assistant_view"
    thread_ts = next_ts()
    channel = dm_channel("U1")
    await deliver(
        h,
        assistant_thread_started(
            user="U1", channel=channel, thread_ts=thread_ts, context_channel="C5"
        ),
    )
    await h.settle()
    [prompts] = h.slack.suggested_prompts
    assert prompts["thread_ts"] == thread_ts and prompts["shown"]
    await h.slack.wait_for(
        lambda: any(
            "I'm tutorbot" in message_text(m) for m in h.slack.bot_messages(channel, thread_ts)
        ),
        timeout=5,
    )
    await deliver(
        h,
        assistant_thread_context_changed(
            user="U1", channel=channel, thread_ts=thread_ts, context_channel="C6"
        ),
    )
    await h.settle()
    h.openai.model.push(Reply(text="Let's go."))
    question = dm_message(text="explain ratios", ts=next_ts(), thread_ts=thread_ts)
    await deliver(h, question)
    answers = await h.wait_answers(channel, thread_ts, 2)
    assert answers[-1] == "Let's go."
    [asked] = [m for m in h.openai.user_messages() if "ratios" in m]
    assert "#channel-c6" in asked


# -- Stop -------------------------------------------------------------------------------------


async def _streaming_answer(h: Harness, channel: str) -> tuple[dict[str, Any], str]:
    """A DM question whose answer is being streamed (slowly); returns it and the stream ts."""
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=6.0))
    question = dm_message(text="explain balancing equations", ts=next_ts())
    await deliver(h, question)

    def live() -> str | None:
        for m in h.slack.bot_messages(channel, question["ts"]):
            if h.slack.is_streaming(channel, m["ts"]) and "Step 2:" in message_text(m):
                return str(m["ts"])
        return None

    return question, await h.slack.wait_for(live, timeout=10)


async def _cancelled_turn(h: Harness) -> Any:
    assert h.bot is not None

    async def cancelled() -> Any:
        turns = await h.bot.store.list_turns(statuses=[TurnStatus.CANCELLED])  # type: ignore[union-attr]
        return turns[0] if turns else None

    return await h.slack.wait_for(cancelled, timeout=10)


def _assert_cancelled_at_the_model_service(h: Harness, run_id: str) -> None:
    if h.runtime == "responses":
        assert h.openai.response(run_id)["status"] == "cancelled"
    elif h.runtime == "assistants":
        assert h.openai.run(run_id)["status"] in ("cancelled", "cancelling")


async def test_stop_ends_the_answer_as_seen_and_the_next_message_works(
    harness: Harness,
) -> None:
    h = harness
    channel = dm_channel("U1")
    question, stream_ts = await _streaming_answer(h, channel)
    stop = stop_session(h.slack, channel=channel, thread_ts=question["ts"])
    seen_at_stop = message_text(h.slack.find_message(channel, stream_ts) or {})
    await deliver(h, stop)
    turn = await _cancelled_turn(h)
    _assert_cancelled_at_the_model_service(h, turn.remote_run_id)
    await asyncio.sleep(1.0)  # the model would still be writing
    await h.settle()
    replies = [
        m for m in h.slack.bot_messages(channel, question["ts"]) if m["ts"] != question["ts"]
    ]
    assert [m["ts"] for m in replies] == [stream_ts], "nothing posted after the stop"
    assert message_text(replies[0]) == seen_at_stop, "the answer stays as it was seen"
    assert "Step 120" not in seen_at_stop
    assert not h.slack.is_streaming(channel, stream_ts)
    # The next message in the thread is answered normally.
    h.openai.model.push(Reply(text="Shorter: do the same to both sides."))
    follow_up = dm_message(text="shorter please", ts=next_ts(), thread_ts=question["ts"])
    await deliver(h, follow_up)
    answers = await h.wait_answers(channel, question["ts"], 2)
    assert answers[-1] == "Shorter: do the same to both sides."


@pytest.mark.parametrize("runtime", ["responses", "assistants"], indirect=True)
async def test_stop_delivered_to_another_process_stops_the_answer(
    harness: Harness,
) -> None:
    """Two processes share the database; Slack delivers the Stop to the one that is not
    writing the answer."""
    h = harness
    other = TutorBot(load_settings(h.env))
    await other.start(port=0)
    try:
        sender = SlackSender(
            f"http://127.0.0.1:{other.port}/slack/events",
            SIGNING_SECRET,
            on_event=h.slack.add_message,
        )
        channel = dm_channel("U1")
        question, stream_ts = await _streaming_answer(h, channel)
        stop = stop_session(h.slack, channel=channel, thread_ts=question["ts"])
        seen_at_stop = message_text(h.slack.find_message(channel, stream_ts) or {})
        result = await sender.post_event(stop)
        assert result.status == 200
        turn = await _cancelled_turn(h)
        _assert_cancelled_at_the_model_service(h, turn.remote_run_id)
        await asyncio.sleep(1.0)
        await h.settle()
        replies = [
            m for m in h.slack.bot_messages(channel, question["ts"]) if m["ts"] != question["ts"]
        ]
        assert [m["ts"] for m in replies] == [stream_ts]
        assert message_text(replies[0]) == seen_at_stop
    finally:
        await other.stop()


async def test_stop_with_nothing_being_answered_is_harmless(harness: Harness) -> None:
    h = harness
    await deliver(h, stop_session(h.slack, channel=dm_channel("U1"), thread_ts=next_ts()))
    h.openai.model.push(Reply(text="Hello!"))
    question = dm_message(text="hi", ts=next_ts())
    await deliver(h, question)
    assert await h.wait_answers(dm_channel("U1"), question["ts"], 1) == ["Hello!"]


@pytest.mark.parametrize("runtime", ["responses"], indirect=True)
async def test_agent_events_without_the_ids_the_bot_needs_are_acknowledged_and_ignored(
    harness: Harness,
) -> None:
    h = harness
    opened = app_home_opened(user="U1")
    del opened["user"]
    stopped = stop_session(h.slack, channel=dm_channel("U1"), thread_ts=next_ts())
    stopped["thread_ts"] = "not-a-ts"
    changed = app_context_changed(user="U1", context_channel="C7")
    changed["channel"] = None
    for event in (opened, stopped, changed):
        await deliver(h, event)  # 200: Slack must not retry what can never work
    await h.settle()
    assert not greetings(h, "U1")
    assert not h.slack.calls_to("conversations.info")
