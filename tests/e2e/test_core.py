"""The core, end to end: Slack threads are assistant threads, for both runtimes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Harness
from tests.fakes.openai_model import Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message, next_ts
from tests.fakes.slack_server import FakeSlack, message_text


async def test_mention_gets_a_threaded_reply(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="**x = 1**, because 3x = 3."))
    event = await harness.mention("Solve 3x + 11 = 14")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "x = 1" in answer
    assert harness.openai.user_messages() == ["Solve 3x + 11 = 14"]
    # The answer is standard Markdown that Slack renders itself, in the thread.
    [reply] = [m for m in harness.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert reply["thread_ts"] == event["ts"]
    assert "**x = 1**" in (reply.get("markdown_text") or reply["blocks"][0]["text"])


async def test_unencodable_characters_are_cleaned_not_dropped(harness: Harness) -> None:
    # Slack sends JSON: a lone surrogate arrives as the escape "\ud800", a NUL as "\u0000".
    lone = await harness.mention("what is 2\ud800+2?")
    nul = await harness.mention("what is 3\x00+3?")
    [first] = await harness.wait_answers("C1", lone["ts"], 1)
    [second] = await harness.wait_answers("C1", nul["ts"], 1)
    assert sorted(harness.openai.user_messages()) == ["what is 2\ufffd+2?", "what is 3+3?"]
    assert "Echo: what is 2\ufffd+2?" in first and "Echo: what is 3+3?" in second
    # Recorded, so the thread goes on.
    await harness.say("and 4\x00+4\udfff?", thread_ts=lone["ts"])
    answers = await harness.wait_answers("C1", lone["ts"], 2)
    assert "Echo: and 4+4\ufffd?" in answers[1]


async def test_follow_up_reuses_the_assistant_thread(harness: Harness) -> None:
    event = await harness.mention("first question")
    await harness.wait_answers("C1", event["ts"], 1)
    # No mention needed once the bot is in the thread.
    await harness.say("second question", thread_ts=event["ts"])
    answers = await harness.wait_answers("C1", event["ts"], 2)
    assert "Echo: second question" in answers[1]
    threads = {ctx.thread_id for ctx in harness.openai.model.calls}
    assert len(threads) == 1
    # The model saw the whole conversation as context.
    last = harness.openai.model.calls[-1]
    assert "first question" in json.dumps(last.history)


async def test_two_slack_threads_are_two_assistant_threads(harness: Harness) -> None:
    a = await harness.mention("question A")
    b = await harness.mention("question B", channel="C2")
    await harness.wait_answers("C1", a["ts"], 1)
    await harness.wait_answers("C2", b["ts"], 1)
    assert len({ctx.thread_id for ctx in harness.openai.model.calls}) == 2


async def test_thread_chatter_without_the_bot_is_ignored(harness: Harness) -> None:
    parent = next_ts()
    await harness.say("people talking", thread_ts=parent)
    await harness.say("top-level chatter")
    await harness.settle()
    assert harness.openai.model.calls == []
    assert harness.slack.bot_messages("C1") == []


async def test_direct_message_threads_are_separate_conversations(harness: Harness) -> None:
    first = await harness.say("what is a prime?", channel="DU1")
    [answer] = await harness.wait_answers("DU1", first["ts"], 1)
    assert "Echo: what is a prime?" in answer
    second = await harness.say("another topic", channel="DU1")
    await harness.wait_answers("DU1", second["ts"], 1)
    assert len({ctx.thread_id for ctx in harness.openai.model.calls}) == 2


async def test_duplicate_deliveries_give_one_reply(harness: Harness) -> None:
    assert harness.sender is not None
    harness.openai.model.push(Reply(text="once", latency=0.3))
    event = app_mention(text="<@UBOT> hello", ts=next_ts())
    first = await harness.sender.post_event(event)
    # Slack's retry: same event_id; and the same message as a `message` event.
    retry = await harness.sender.post_event(event, event_id=first.event_id, retry_num=1)
    copy = message(text="<@UBOT> hello", ts=event["ts"])
    also = await harness.sender.post_event(copy)
    assert (first.status, retry.status, also.status) == (200, 200, 200)
    await harness.wait_answers("C1", event["ts"], 1)
    await harness.settle()
    assert len(harness.answers("C1", event["ts"])) == 1
    assert len(harness.openai.model.calls) == 1


async def test_burst_in_one_thread_is_answered_in_order(harness: Harness) -> None:
    event = await harness.mention("q0")
    await harness.wait_answers("C1", event["ts"], 1)
    for i in range(1, 4):
        harness.openai.model.push(Reply(text=f"answer {i}", latency=0.3))
    await asyncio.gather(*(harness.say(f"q{i}", thread_ts=event["ts"]) for i in range(1, 4)))
    answers = await harness.wait_answers("C1", event["ts"], 4)
    assert [a.split()[-1] for a in answers[1:]] == ["1", "2", "3"]
    assert max(harness.openai.max_concurrent.values()) == 1
    # The model got the messages in the order Slack delivered them.
    assert harness.openai.user_messages()[1:] == ["q1", "q2", "q3"]


async def test_threads_proceed_concurrently(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="slow", latency=1.5), Reply(text="fast"))
    slow = await harness.mention("slow one")
    await harness.slack.wait_for(lambda: harness.openai.model.calls)  # the slow run started
    fast = await harness.mention("fast one", channel="C2")
    started = time.monotonic()
    await harness.wait_answers("C2", fast["ts"], 1)
    assert time.monotonic() - started < 1.4, "a slow thread delayed another thread"
    await harness.wait_answers("C1", slow["ts"], 1)


async def test_model_failure_is_told_in_the_thread(harness: Harness) -> None:
    harness.openai.model.push(Reply(fail="server_error"))
    event = await harness.mention("break please")
    [note] = await harness.wait_answers("C1", event["ts"], 1)
    assert "again" in note.lower()
    assert "Traceback" not in note
    # The process keeps serving; the next message works.
    await harness.say("try again", thread_ts=event["ts"])
    answers = await harness.wait_answers("C1", event["ts"], 2)
    assert "Echo: try again" in answers[1]


async def test_model_service_down_is_told_in_the_thread(harness: Harness) -> None:
    harness.openai.fail_next("/", status=500, count=50)
    event = await harness.mention("anyone there?")
    [note] = await harness.wait_answers("C1", event["ts"], 1, timeout=30)
    assert "model service" in note.lower()


async def test_empty_mention_gets_a_friendly_prompt(harness: Harness) -> None:
    assert harness.sender is not None
    event = app_mention(text="<@UBOT>", ts=next_ts())
    await harness.sender.post_event(event)
    [prompt] = await harness.wait_answers("C1", event["ts"], 1)
    assert "ask me" in prompt.lower()
    assert harness.openai.model.calls == []


async def test_slack_rate_limit_is_waited_out_and_posted_once(harness: Harness) -> None:
    harness.slack.rate_limit_next("chat.update", retry_after=1)
    harness.slack.rate_limit_next("chat.postMessage", retry_after=1)
    event = await harness.mention("rate limited")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Echo: rate limited" in answer


async def test_restart_with_a_run_in_flight_resumes_it(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="survived the restart", latency=2.0))
    # A chat server keeps nothing: the restarted bot asks it again, from the stored history.
    asks = 2 if harness.runtime == "chat" else 1
    if asks == 2:
        harness.openai.model.push(Reply(text="survived the restart"))
    event = await harness.mention("long question")
    await harness.slack.wait_for(lambda: harness.openai.model.calls)
    await harness.restart()
    [answer] = await harness.wait_answers("C1", event["ts"], 1, timeout=20)
    assert "survived the restart" in answer
    assert len(harness.openai.model.calls) == asks


async def test_queued_message_survives_a_restart(harness: Harness) -> None:
    event = await harness.mention("q0")
    await harness.wait_answers("C1", event["ts"], 1)
    # The n-th question is answered "a<n>", however often it is asked (a chat server is asked
    # again after the restart: it keeps nothing).
    harness.openai.model.default = lambda ctx: Reply(
        text="a" + (ctx.last_user_text or "").removeprefix("q"),
        latency=1.0 if ctx.last_user_text == "q1" else 0.0,
    )
    await harness.say("q1", thread_ts=event["ts"])
    await harness.say("q2", thread_ts=event["ts"])
    await harness.slack.wait_for(lambda: len(harness.openai.model.calls) >= 2)
    await harness.restart()
    answers = await harness.wait_answers("C1", event["ts"], 3, timeout=20)
    assert [a.split()[-1] for a in answers[1:]] == ["a1", "a2"]


async def test_healthz(harness: Harness) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{harness.url}/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["ok"] is True
    assert body["runtime"] == harness.runtime


async def test_refused_blocks_fall_back_to_text(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="The answer is 42."))
    harness.slack.fail_next("chat.update", "invalid_blocks")
    event = await harness.mention("life, the universe?")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "42" in answer


async def test_dropped_connection_on_a_post_never_doubles_it(harness: Harness) -> None:
    harness.slack.disconnect_next("chat.postMessage")  # the answer goes through, unconfirmed…
    event = await harness.mention("hello")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Echo: hello" in answer
    await harness.settle()
    # …and is not posted again: the bot looked at the thread before trying again.
    assert harness.answers("C1", event["ts"]) == [answer]
    assert len(harness.slack.calls_to("chat.postMessage")) == 1


async def test_mention_inside_someone_elses_thread_reads_it_first(harness: Harness) -> None:
    parent = await harness.say("How do I integrate x^2?", user="U2")
    await harness.say("no idea, maybe ask the bot", user="U3", thread_ts=parent["ts"])
    event = await harness.mention("can you help?", thread_ts=parent["ts"])
    [answer] = await harness.wait_answers("C1", parent["ts"], 1)
    assert "can you help?" in answer
    seen = harness.openai.user_messages()[0]
    assert "How do I integrate x^2?" in seen and "maybe ask the bot" in seen
    assert event["ts"] != parent["ts"]


def long_thread(harness: Harness, count: int) -> dict:
    """A thread of ``count`` messages by people (parent ``msg-000`` included), in the fake only."""
    parent = harness.slack.add_message(message(text="msg-000 a long discussion", user="U2"))
    assert parent is not None
    for i in range(1, count):
        harness.slack.add_message(
            message(text=f"msg-{i:03d} says", user=("U2", "U3")[i % 2], thread_ts=parent["ts"])
        )
    return parent


async def test_a_mention_deep_in_a_long_thread_reads_the_latest_messages(
    harness: Harness,
) -> None:
    parent = long_thread(harness, 80)
    await harness.mention("what do you make of this?", thread_ts=parent["ts"])
    await harness.wait_answers("C1", parent["ts"], 1)
    seen = harness.openai.user_messages()[0]
    missing = [i for i in range(30, 80) if f"msg-{i:03d}" not in seen]
    assert missing == [], f"the model did not see messages {missing}"
    assert seen.rstrip().endswith("what do you make of this?")


async def test_a_thread_longer_than_a_page_is_read_to_the_mention(harness: Harness) -> None:
    parent = long_thread(harness, 450)
    await harness.mention("and the conclusion?", thread_ts=parent["ts"])
    await harness.wait_answers("C1", parent["ts"], 1)
    seen = harness.openai.user_messages()[0]
    missing = [i for i in range(400, 450) if f"msg-{i:03d}" not in seen]
    assert missing == [], f"the model did not see messages {missing}"
    # Pages of 200, following next_cursor: three calls for 451 messages, none wasted.
    reads = harness.slack.calls_to("conversations.replies")
    assert [c.args.get("limit") for c in reads] == ["200", "200", "200"]
    assert [bool(c.args.get("cursor")) for c in reads] == [False, True, True]


async def test_a_lost_database_is_noticed_deep_in_a_long_thread(harness: Harness) -> None:
    parent = long_thread(harness, 60)
    await harness.mention("summarize please", thread_ts=parent["ts"])
    await harness.wait_answers("C1", parent["ts"], 1)  # the bot speaks after message 60
    await harness.stop()
    db = Path(harness.env["DATABASE_URL"].removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
    await harness.start()
    await harness.say("and now?", thread_ts=parent["ts"])
    answers = await harness.wait_answers("C1", parent["ts"], 3)
    assert "storage was reset" in answers[1]
    assert "Echo:" in answers[2] and "and now?" in answers[2]


async def test_lost_database_starts_threads_fresh_with_a_note(harness: Harness) -> None:
    event = await harness.mention("remember me?")
    await harness.wait_answers("C1", event["ts"], 1)
    await harness.stop()
    db = Path(harness.env["DATABASE_URL"].removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
    await harness.start()
    # A plain follow-up (no mention) in the thread the bot was in is still answered.
    await harness.say("still there?", thread_ts=event["ts"])
    answers = await harness.wait_answers("C1", event["ts"], 3)
    assert "storage was reset" in answers[1]
    assert "Echo:" in answers[2] and "still there?" in answers[2]
    assert "remember me?" in harness.openai.user_messages()[-1]  # re-read as context


async def test_transient_model_rate_limits_are_retried(harness: Harness) -> None:
    harness.openai.fail_next("/v1/", status=429, count=2, retry_after=0.01)
    event = await harness.mention("busy?")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Echo: busy?" in answer


@pytest.mark.parametrize(
    ("runtime", "status", "words"),
    [
        ("responses", "cancelled", "cancelled"),
        ("responses", "incomplete", "cut short"),
        ("assistants", "cancelled", "cancelled"),
        ("assistants", "expired", "expired"),  # only runs expire
        ("assistants", "incomplete", "cut short"),
        ("chat", "incomplete", "cut short"),  # finish_reason "length"
    ],
)
async def test_runs_that_end_badly_are_explained(harness: Harness, status: str, words: str) -> None:
    harness.openai.model.push(Reply(text="partial answer", status=status))
    event = await harness.mention("go")
    await harness.slack.wait_for(
        lambda: any(words in a for a in harness.answers("C1", event["ts"]))
    )
    await harness.say("next", thread_ts=event["ts"])
    await harness.slack.wait_for(
        lambda: any("Echo: next" in a for a in harness.answers("C1", event["ts"]))
    )


async def test_a_run_that_takes_too_long_is_stopped_and_explained(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, runtime: str
) -> None:
    h = Harness(fake_slack, fake_openai, tmp_path / "bot.db", runtime, RUN_TIMEOUT_SECONDS="1")
    await h.start()
    try:
        h.openai.model.push(Reply(text="too late", latency=5))
        event = await h.mention("slow")
        [note] = await h.wait_answers("C1", event["ts"], 1)
        assert "too long" in note
        await h.say("again", thread_ts=event["ts"])
        await h.slack.wait_for(
            lambda: any("Echo: again" in a for a in h.answers("C1", event["ts"]))
        )
    finally:
        await h.stop()


async def test_a_long_answer_is_split_within_slack_limits(harness: Harness) -> None:
    code = "\n".join(f"print({i} * {i})  # line {i}" for i in range(900))
    long_answer = "Here is the program:\n\n```python\n" + code + "\n```\n\nAnd that's all."
    assert len(long_answer) > 25_000
    harness.openai.model.push(Reply(text=long_answer))
    event = await harness.mention("write a long program")
    await harness.slack.wait_for(
        lambda: any("that's all" in a for a in harness.answers("C1", event["ts"]))
    )
    replies = [m for m in harness.slack.bot_messages("C1", event["ts"]) if m["ts"] != event["ts"]]
    assert len(replies) >= 3
    for reply in replies:
        markdown = "".join(b.get("text", "") for b in reply["blocks"] if b["type"] == "markdown")
        assert len(markdown) <= 12_000
        assert markdown.count("```") % 2 == 0  # every chunk's code fences are balanced
    assert not [c for c in harness.slack.calls if not c.ok]


@pytest.mark.parametrize("runtime", ["responses"])
async def test_a_busy_conversation_is_waited_for(harness: Harness) -> None:
    """A create the SDK retried after it went through leaves the conversation busy."""
    harness.openai.fail_next(
        "/responses",
        status=400,
        count=1,
        body={
            "error": {
                "message": "Another process is currently operating on this conversation.",
                "type": "invalid_request_error",
                "code": "conversation_locked",
                "param": None,
            }
        },
    )
    event = await harness.mention("hello again")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Echo: hello again" in answer


@pytest.mark.parametrize("runtime", ["assistants"])
async def test_a_run_create_retried_after_it_went_through_is_awaited(harness: Harness) -> None:
    """No idempotency keys: the SDK's retry of a create that succeeded meets an active run."""
    harness.openai.model.push(Reply(text="the one answer", latency=1.0))
    harness.openai.fail_next("/runs", method="POST", after_processing=True, retry_after=0.01)
    event = await harness.mention("once please")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "the one answer" in answer
    # The create was not repeated blindly: the bot looked, found the run and awaited it.
    assert harness.openai.violations == []
    assert harness.openai.user_messages() == ["once please"]


async def test_a_mention_where_the_bot_is_not_a_member_is_answered_by_dm(
    harness: Harness,
) -> None:
    """Issue 14: no model call, and the student hears how to invite the bot."""
    harness.slack.remove_bot("C9")
    event = await harness.mention("help me", channel="C9")
    await harness.slack.wait_for(lambda: harness.slack.bot_messages("DU1"), timeout=5)
    [note] = harness.slack.bot_messages("DU1")
    assert "/invite @tutorbot" in message_text(note) and "<#C9>" in message_text(note)
    await harness.settle()
    assert harness.openai.user_messages() == []
    assert harness.slack.bot_messages("C9", event["ts"]) == []


async def test_chatter_in_threads_the_bot_never_joined_costs_no_slack_reads(
    harness: Harness,
) -> None:
    """Issue 14: conversations.replies may be limited to one call a minute; a thread that
    began while the database existed cannot have been lost by it, so it is not read."""
    for i in range(5):
        parent = await harness.say(f"a chat among people {i}", user="U2")
        await harness.say("a reply, no mention", user="U3", thread_ts=parent["ts"])
    await harness.settle()
    assert harness.slack.calls_to("conversations.replies") == []
    assert harness.openai.user_messages() == []


async def test_answers_wait_while_slack_is_unreachable_and_are_posted_once_it_is_back(
    harness: Harness,
) -> None:
    """Issue 14, item 2: nothing is marked failed or lost; each answer appears once."""
    h = harness
    h.openai.model.default = lambda ctx: Reply(
        text=f"Answer to {ctx.last_user_text}", first_token_latency=1.0
    )
    events = [await h.mention(f"question {i}", channel=f"C{i}") for i in range(5)]
    await h.slack.wait_for(lambda: len(h.openai.user_messages()) == 5)  # with the model…
    await h.slack.go_offline()  # …when Slack starts refusing connections, for 4 s
    await asyncio.sleep(4.0)
    await h.slack.go_online()
    for i, event in enumerate(events):
        [answer] = await h.wait_answers(f"C{i}", event["ts"], 1, timeout=40)
        assert answer == f"Answer to question {i}"
    await h.settle(timeout=30)
    for i, event in enumerate(events):
        assert h.answers(f"C{i}", event["ts"]) == [f"Answer to question {i}"]


async def test_a_very_long_message_is_read_in_part_and_the_student_told(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="Here is what I read."))
    text = "Please check my essay. " + "word " * 7_000  # ~35,000 characters
    event = await harness.mention(text)
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Here is what I read." in answer
    assert "first 32,000 characters" in answer
    [sent] = harness.openai.user_messages()
    assert "Please check my essay." in sent and len(sent) <= 32_000


async def test_a_5xx_from_slack_on_the_answer_posts_it_once(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="Exactly one answer."))
    harness.slack.fail_next("chat.postMessage", "internal_error", status=500)
    event = await harness.mention("hello")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "Exactly one answer." in answer
    await harness.settle()
    assert harness.answers("C1", event["ts"]) == [answer]


async def test_the_status_indicator_is_cleared_after_a_restart(harness: Harness) -> None:
    harness.openai.model.push(Reply(text="x = 1", first_token_latency=2.0))
    if harness.runtime == "chat":  # a chat server keeps nothing: the answer is asked again
        harness.openai.model.push(Reply(text="x = 1", first_token_latency=0.5))
    event = await harness.mention("solve 3x + 11 = 14")
    await harness.slack.wait_for(lambda: harness.slack.status_of("C1", event["ts"]), timeout=5)
    await harness.restart()
    [answer] = await harness.wait_answers("C1", event["ts"], 1, timeout=20)
    assert "x = 1" in answer
    await harness.settle()
    assert harness.slack.status_of("C1", event["ts"]) is None


@pytest.mark.parametrize("runtime", ["responses"])
@pytest.mark.parametrize("latency", [0.5, 4.0])
async def test_a_response_create_retried_after_it_went_through_adds_the_message_once(
    harness: Harness, latency: float
) -> None:
    """A create whose answer was lost may have gone through: the conversation must get the
    student's message once, and one answer is posted. A response's input reaches its
    conversation only when it completes; while it runs, a second try is refused."""
    harness.openai.model.push(Reply(text="the one answer", latency=latency))
    harness.openai.fail_next("/responses", method="POST", after_processing=True)
    event = await harness.mention("once please")
    [answer] = await harness.wait_answers("C1", event["ts"], 1)
    assert "the one answer" in answer
    await harness.settle()
    assert harness.answers("C1", event["ts"]) == [answer]
    assert harness.openai.user_messages() == ["once please"]
    # The refusals (conversation_locked) are how the bot learns the first try still runs.
    assert all(v.startswith("conversation_locked") for v in harness.openai.violations)
    harness.openai.violations.clear()
