"""👍 / 👎 under answers, ``/tutor stats`` and the Home tab, end to end: the real bot against
the fake Slack and model service, on every runtime."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.agent.feedback import FEEDBACK_ACTION_ID, THANKS, Vote
from store.base import ChannelActivity
from tests.e2e.conftest import Harness
from tests.e2e.test_quiz import MC_ONLY, choose, quiz_call, submit, wait_quizzes
from tests.e2e.test_store_faults import db_path, write_lock
from tests.fakes.openai_model import Reply
from tests.fakes.slack_payloads import app_home_opened, feedback_click
from tests.fakes.slack_server import feedback_buttons, message_text

LONG = " ".join(f"Step {i}: keep both sides balanced." for i in range(1, 61))


def with_buttons(h: Harness, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    return [
        m
        for m in h.slack.bot_messages(channel, thread_ts)
        if feedback_buttons(m) and not h.slack.is_streaming(channel, m["ts"])
    ]


async def answer_with_buttons(h: Harness, thread_ts: str, channel: str = "C1") -> dict[str, Any]:
    [message] = await h.slack.wait_for(lambda: with_buttons(h, thread_ts, channel), timeout=15)
    return message


def turn_of(message: dict[str, Any]) -> int:
    [element] = feedback_buttons(message)
    assert element["action_id"] == FEEDBACK_ACTION_ID
    value = element["positive_button"]["value"]
    assert element["negative_button"]["value"] == value.replace("up:", "down:")
    return int(value.split(":")[1])


def thanks(h: Harness, user: str) -> list[dict[str, Any]]:
    return [e for e in h.slack.ephemerals if e["user"] == user and "Thanks for the" in e["text"]]


async def activity(h: Harness, channel: str = "C1") -> ChannelActivity:
    assert h.bot is not None
    return await h.bot.store.channel_activity("T1", channel, datetime.now(UTC) - timedelta(days=7))


async def click(h: Harness, message: dict[str, Any], *, positive: bool, user: str) -> None:
    assert h.sender is not None
    result = await h.sender.post_interaction(
        feedback_click(message=message, positive=positive, user=user)
    )
    assert result.status == 200, result.body


# -- the buttons -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["stream", "edit", "post"])
async def test_every_answer_ends_with_feedback_buttons(harness: Harness, mode: str) -> None:
    h = harness
    assert h.bot is not None
    if mode != "stream":
        h.slack.refuse_streaming("C1")
    if mode == "post":  # Slack's edit budget is spent too (as after its 429s)
        h.bot.budget.rate_limited("T1", "chat.update", 60.0)
    h.openai.model.push(Reply(text=LONG, first_token_latency=0.1, write_time=1.0))
    event = await h.mention("explain balancing")
    message = await answer_with_buttons(h, event["ts"])
    assert " ".join(message_text(message).split()) == LONG  # the buttons add no text
    assert turn_of(message) > 0
    used = {
        "stream": "chat.stopStream",
        "edit": "chat.update",
        "post": "chat.postMessage",
    }[mode]
    ending = [
        c
        for c in h.slack.calls_to(used)
        if c.status == 200 and "context_actions" in json.dumps(c.args.get("blocks"))
    ]
    assert len(ending) == 1, h.slack.describe()
    if mode == "post":
        assert h.slack.calls_to("chat.update") == []
    await h.settle()
    assert len(with_buttons(h, event["ts"])) == 1


async def test_a_quiz_answer_has_buttons_and_what_came_before_the_quiz_does_not(
    harness: Harness,
) -> None:
    h = harness
    h.openai.model.push(
        Reply(text="Let's check first.", function_calls=[quiz_call(MC_ONLY)]),
        Reply(text="4 is right, well done."),
    )
    event = await h.mention("quiz me")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    await submit(h, quiz)
    message = await answer_with_buttons(h, event["ts"])
    assert "well done" in message_text(message)
    await h.settle()
    [only] = with_buttons(h, event["ts"])
    assert only["ts"] == message["ts"]
    before = [m for m in h.slack.bot_messages("C1", event["ts"]) if "check first" in str(m)]
    assert before and not feedback_buttons(before[0])


async def test_a_failure_notice_has_no_buttons(harness: Harness) -> None:
    h = harness
    path = {"responses": "/responses", "assistants": "/runs"}.get(h.runtime, "/chat/completions")
    h.openai.fail_next(path, status=500, count=4, method="POST")
    event = await h.mention("hello?")
    [note] = await h.wait_answers("C1", event["ts"], 1)
    assert "couldn't reach the model service" in note
    await h.settle()
    assert with_buttons(h, event["ts"]) == []


# -- clicks ------------------------------------------------------------------------------------


async def test_votes_change_count_per_user_and_a_double_click_counts_once(
    harness: Harness,
) -> None:
    h = harness
    h.openai.model.push(Reply(text="x = 1"))
    event = await h.mention("solve 3x + 11 = 14")
    message = await answer_with_buttons(h, event["ts"])

    await click(h, message, positive=True, user="U1")
    await h.slack.wait_for(lambda: thanks(h, "U1"))
    [thank] = thanks(h, "U1")
    assert thank["text"] == THANKS[Vote.UP]
    assert thank["channel"] == "C1" and thank["thread_ts"] == event["ts"]
    assert ((await activity(h)).thumbs_up, (await activity(h)).thumbs_down) == (1, 0)

    # A double click (two deliveries at once, then once more): one vote, one thanks.
    await asyncio.gather(*(click(h, message, positive=True, user="U1") for _ in range(2)))
    await click(h, message, positive=True, user="U1")
    await h.settle()
    assert len(thanks(h, "U1")) == 1
    assert ((await activity(h)).thumbs_up, (await activity(h)).thumbs_down) == (1, 0)

    # A change of mind: the 👎 replaces the 👍.
    await click(h, message, positive=False, user="U1")
    await h.slack.wait_for(lambda: len(thanks(h, "U1")) == 2)
    assert thanks(h, "U1")[-1]["text"] == THANKS[Vote.DOWN]
    assert ((await activity(h)).thumbs_up, (await activity(h)).thumbs_down) == (0, 1)

    # A classmate's vote is their own.
    await click(h, message, positive=True, user="U2")
    await h.slack.wait_for(lambda: thanks(h, "U2"))
    assert ((await activity(h)).thumbs_up, (await activity(h)).thumbs_down) == (1, 1)
    assert all(e["via"] == "chat.postEphemeral" for e in thanks(h, "U1") + thanks(h, "U2"))


@pytest.mark.parametrize("runtime", ["responses"])
async def test_a_click_the_bot_cannot_use_gets_a_2xx_and_a_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    assert h.sender is not None
    h.openai.model.push(Reply(text="x = 1"))
    event = await h.mention("solve it")
    message = await answer_with_buttons(h, event["ts"])
    tampered = feedback_click(message=message, user="U1")
    tampered["actions"][0]["value"] = "up:not-a-turn"
    no_user = feedback_click(message=message, user="U1")
    del no_user["user"]
    elsewhere = feedback_click(message=message, user="U1", channel="C9")  # not its channel
    with caplog.at_level(logging.INFO):
        for payload in (tampered, no_user, elsewhere):
            result = await h.sender.post_interaction(payload)
            assert result.status == 200, result.body
        await h.settle()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "not a feedback value: 'up:not-a-turn'" in logged
    assert "feedback click without a user" in logged
    assert f"on turn {turn_of(message)}, which is not an answer in T1/C9" in logged
    assert h.slack.ephemerals == []
    assert (await activity(h)).thumbs_up == 0
    # The real click still works afterwards.
    await click(h, message, positive=True, user="U1")
    await h.slack.wait_for(lambda: thanks(h, "U1"))


# -- /tutor stats and the Home tab ------------------------------------------------------------


async def _a_week_in_c1(h: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two questions answered (one of them with a quiz, posted and submitted), one failed
    answer, 👍 from U1 and U2 and a 👎 from U3. Returns (the quiz request event, the quiz
    message)."""
    h.openai.model.push(Reply(text="x = 1"))
    asked = await h.mention("solve 3x + 11 = 14", user="U1")
    answer = await answer_with_buttons(h, asked["ts"])

    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Right, 4."))
    quizzed = await h.mention("quiz me on sums", user="U1")
    [quiz] = await wait_quizzes(h, quizzed["ts"])
    await choose(h, quiz, "4")
    await submit(h, quiz)
    quiz_answer = await answer_with_buttons(h, quizzed["ts"])

    path = {"responses": "/responses", "assistants": "/runs"}.get(h.runtime, "/chat/completions")
    h.openai.fail_next(path, status=500, count=4, method="POST")
    failed = await h.mention("and this?", user="U2")
    await h.wait_answers("C1", failed["ts"], 1)

    await click(h, answer, positive=True, user="U1")
    await click(h, answer, positive=True, user="U2")
    await click(h, quiz_answer, positive=False, user="U3")
    await h.slack.wait_for(lambda: all(thanks(h, u) for u in ("U1", "U2", "U3")))
    await h.settle()
    return quizzed, quiz


async def test_tutor_stats_shows_the_channel_week_to_the_asker_only(harness: Harness) -> None:
    h = harness
    assert h.sender is not None
    await _a_week_in_c1(h)
    h.openai.model.push(Reply(text="elsewhere"))
    other = await h.mention("another channel", channel="C2", user="U1")
    await answer_with_buttons(h, other["ts"], channel="C2")
    await h.settle()
    posted_before = len(h.slack.calls_to("chat.postMessage"))

    url = h.slack.response_url(channel="C1", user="U4")
    result = await h.sender.post_command("stats", user_id="U4", response_url=url)
    assert result.status == 200
    [reply] = await h.slack.wait_for(lambda: [e for e in h.slack.ephemerals if e["user"] == "U4"])
    assert reply["via"] == "response_url" and reply["response_type"] == "ephemeral"
    assert reply["text"] == (
        "Tutor stats for <#C1>, the last 7 days: 2 questions answered, 1 quizzes posted "
        "(1 submitted), 2 👍 / 1 👎, 1 failed answers."
    )
    shown = json.dumps(reply["blocks"], ensure_ascii=False)
    assert "*Questions answered*\\n2" in shown and "*Failed answers*\\n1" in shown
    assert "*👍 Helpful*\\n2 (67%)" in shown
    # Nothing was said in the channel, and no question went to the model.
    assert len(h.slack.calls_to("chat.postMessage")) == posted_before


async def test_the_home_tab_shows_the_student_their_quiz_and_conversations(
    harness: Harness,
) -> None:
    h = harness
    assert h.sender is not None
    quizzed, quiz = await _a_week_in_c1(h)

    result = await h.sender.post_event(app_home_opened(user="U1", tab="home"))
    assert result.status == 200
    view = await h.slack.wait_for(lambda: h.slack.home_views.get("U1"))
    shown = json.dumps(view["blocks"], ensure_ascii=False)
    assert "Warm-up" in shown and "2 + 2?" in shown and "→ 4" in shown
    assert "✅ Submitted" in shown
    # Their two conversations, newest first, each with a link to its thread.
    assert shown.index("quiz me on sums") < shown.index("solve 3x + 11 = 14")
    assert f"/archives/C1/p{quizzed['ts'].replace('.', '')}|quiz me on sums>" in shown
    assert f"/archives/C1/p{quiz['ts'].replace('.', '')}" in shown  # the quiz itself
    assert "and this?" not in shown  # U2's question
    model = h.bot.runtime.model if h.bot else ""
    assert f"`{model}`" in shown
    assert {"responses": "Responses", "assistants": "Assistants", "chat": "Chat"}[
        h.runtime
    ] in shown

    # Another student sees their own (empty) page; the Messages tab publishes nothing.
    await h.sender.post_event(app_home_opened(user="U5", tab="home"))
    other = await h.slack.wait_for(lambda: h.slack.home_views.get("U5"))
    other_shown = json.dumps(other["blocks"], ensure_ascii=False)
    assert "No conversations yet" in other_shown and "No quizzes yet" in other_shown
    published = len(h.slack.calls_to("views.publish"))
    result = await h.sender.post_event(app_home_opened(user="U6", tab="messages"))
    assert result.status == 200
    await h.settle()
    assert len(h.slack.calls_to("views.publish")) == published
    assert "U6" not in h.slack.home_views

    # Opened again: the links are remembered, not asked for again.
    permalinks = len(h.slack.calls_to("chat.getPermalink"))
    await h.sender.post_event(app_home_opened(user="U1", tab="home"))
    await h.slack.wait_for(lambda: len(h.slack.calls_to("views.publish")) == published + 1)
    assert len(h.slack.calls_to("chat.getPermalink")) == permalinks


@pytest.mark.parametrize("runtime", ["responses"])
async def test_a_click_while_the_database_is_locked_is_recorded_once_it_is_back(
    harness: Harness,
) -> None:
    h = harness
    h.openai.model.push(Reply(text="x = 1"))
    event = await h.mention("solve it")
    message = await answer_with_buttons(h, event["ts"])
    await h.settle()
    with write_lock(db_path(h)):  # past the bot's 5 s busy timeout
        await click(h, message, positive=True, user="U1")  # acked at once all the same
        await asyncio.sleep(7.0)
        assert thanks(h, "U1") == []
    await h.slack.wait_for(lambda: thanks(h, "U1"), timeout=20)
    assert (await activity(h)).thumbs_up == 1


@pytest.mark.parametrize("runtime", ["responses"])
async def test_the_home_tab_is_published_without_links_when_slack_is_slow_to_give_them(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    assert h.sender is not None
    h.openai.model.push(Reply(text="x = 1"))
    event = await h.mention("solve 3x + 11 = 14")
    await answer_with_buttons(h, event["ts"])
    await h.settle()
    h.slack.delay_next("chat.getPermalink", 5.0)
    h.slack.fail_next("views.publish", "internal_error")
    with caplog.at_level(logging.INFO):
        await h.sender.post_event(app_home_opened(user="U1", tab="home"))
        await h.settle()
    assert "Home tab of U1 not published: Slack refused it" in caplog.text
    assert "U1" not in h.slack.home_views
    # Opened again: published at once, the link left out while Slack is slow.
    h.slack.delay_next("chat.getPermalink", 5.0)
    await h.sender.post_event(app_home_opened(user="U1", tab="home"))
    started = asyncio.get_running_loop().time()
    view = await h.slack.wait_for(lambda: h.slack.home_views.get("U1"))
    waited = asyncio.get_running_loop().time() - started
    print(f"\nHome tab published {waited:.2f} s after the open (links budget 2 s)")
    shown = json.dumps(view["blocks"], ensure_ascii=False)
    assert "solve 3x + 11 = 14" in shown and "/archives/" not in shown
