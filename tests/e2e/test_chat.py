"""The ``chat`` runtime end to end: plain Chat Completions against a fake vLLM / Ollama server,
the conversation kept in the bot's store (the server keeps nothing)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain import ThreadKey
from bot.runtime.chat import NO_CODE
from store import open_store
from tests.e2e.conftest import Harness
from tests.e2e.test_files_and_code import mention_with_files
from tests.e2e.test_quiz import (
    MC_ONLY,
    MIXED_QUIZ,
    answer_free,
    choose,
    quiz_call,
    quiz_messages,
    submit,
    wait_quizzes,
)
from tests.fakes.openai_model import ModelContext, Reply
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, next_ts
from tests.fakes.slack_server import FakeSlack, message_text
from tests.unit.test_documents import make_pdf

LONG = "Subtract 11 from both sides, so 3x = 3; then divide both sides by 3: x = 1. "


@pytest.fixture
def runtime() -> str:
    return "chat"


@pytest.fixture
async def small_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A bot that sends at most about 400 tokens of conversation."""
    h = Harness(fake_slack, fake_openai, tmp_path / "bot.db", "chat", CHAT_HISTORY_TOKENS="400")
    await h.start()
    yield h
    await h.stop()
    assert fake_openai.violations == []


def requests(h: Harness) -> list[dict[str, Any]]:
    return list(h.openai.chat.requests)


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


def replies(h: Harness, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in h.slack.bot_messages("C1", thread_ts) if m["ts"] != thread_ts]


async def conversation_of(h: Harness, thread_ts: str) -> str:
    assert h.bot is not None
    thread = await h.bot.store.get_thread(ThreadKey("T1", "C1", thread_ts))
    assert thread is not None and thread.runtime == "chat" and thread.remote_id is not None
    return thread.remote_id


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["vllm", "ollama"])
async def test_an_answer_streams_into_slack(harness: Harness, flavour: str) -> None:
    h = harness
    h.openai.chat.flavour = flavour
    h.openai.chat.chunk_interval = 0.05
    text = (LONG * 3).strip()
    h.openai.model.push(Reply(text=text))
    event = await h.mention("Solve 3x + 11 = 14")
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert text in answer
    # Slack got it as a stream, in pieces, and it ends as exactly what the model wrote.
    assert h.slack.calls_to("chat.startStream")
    assert h.slack.calls_to("chat.appendStream")
    [reply] = replies(h, event["ts"])
    assert reply["markdown_text"] == text
    [body] = requests(h)
    assert body["stream"] is True
    assert body["messages"][0]["role"] == "system" and NO_CODE in body["messages"][0]["content"]
    assert body["messages"][1:] == [{"role": "user", "content": "Solve 3x + 11 = 14"}]
    # Only what a chat server can do: the quiz function, no code interpreter or file search.
    assert [t["function"]["name"] for t in body["tools"]] == ["display_quiz"]
    assert "prompt_cache_key" not in body  # not OpenAI itself: older servers refuse it
    assert (await conversation_of(h, event["ts"])).startswith("chat_")


async def test_an_answer_that_ends_while_an_append_is_under_way_loses_nothing(
    harness: Harness,
) -> None:
    h = harness
    h.openai.chat.chunk_interval = 0.1
    h.openai.chat.max_chunks = 8  # the answer ends about 0.8 s after it starts
    text = LONG.strip()
    h.openai.model.push(Reply(text=text))
    h.slack.delay_next("chat.appendStream", 1.0)  # the first append is slow to answer
    event = await h.mention("Solve 3x + 11 = 14")
    await h.slack.wait_for(lambda: h.slack.calls_to("chat.stopStream"))
    await h.settle()
    [reply] = replies(h, event["ts"])
    assert reply["markdown_text"] == text


async def test_a_stream_that_breaks_before_any_text_is_asked_again(harness: Harness) -> None:
    h = harness
    h.openai.chat.break_next_stream(after_chunks=1, how="cut")  # only the role chunk came
    h.openai.model.push(Reply(text="lost"), Reply(text="x = 1"))
    event = await h.mention("Solve 3x + 11 = 14")
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert "x = 1" in answer and "lost" not in answer
    assert len(requests(h)) == 2


async def test_a_stream_that_breaks_mid_answer_is_told_and_the_next_message_works(
    harness: Harness,
) -> None:
    h = harness
    h.openai.chat.break_next_stream(after_chunks=6, how="cut")
    h.openai.chat.chunk_interval = 0.05
    h.openai.model.push(Reply(text=LONG * 2))
    event = await h.mention("Solve 3x + 11 = 14")
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "model service" in answers[-1]
    assert len(requests(h)) == 1  # the student saw part of it: not asked again behind them
    await h.say("try again", thread_ts=event["ts"])
    await h.slack.wait_for(
        lambda: any("Echo: try again" in a for a in h.answers("C1", event["ts"]))
    )
    # The unanswered message stays in the history, followed by a note (never two user
    # messages in a row: some chat templates refuse them).
    last = requests(h)[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    assert last[1]["content"] == "Solve 3x + 11 = 14"
    assert "interrupted" in last[2]["content"]


async def test_the_conversation_is_sent_whole_each_time(harness: Harness) -> None:
    h = harness
    event = await h.mention("first question")
    await h.wait_answers("C1", event["ts"], 1)
    await h.say("second question", thread_ts=event["ts"])
    await h.wait_answers("C1", event["ts"], 2)
    last = requests(h)[-1]["messages"]
    assert [(m["role"], m["content"]) for m in last[1:]] == [
        ("user", "first question"),
        ("assistant", "Echo: first question"),
        ("user", "second question"),
    ]


# -- quizzes ---------------------------------------------------------------------------------


async def test_quiz_round_trip(harness: Harness) -> None:
    h = harness

    def feedback(ctx: ModelContext) -> Reply:
        [output] = ctx.tool_outputs
        return Reply(text=f"You said {json.loads(output['output'])}: well done!")

    h.openai.model.push(
        Reply(text="Let's check.", function_calls=[quiz_call(MIXED_QUIZ)]), feedback
    )
    event = await h.mention("quiz me on equations")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "x = 3")
    await answer_free(h, quiz, "Divide both sides by 2.")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "well done" in answers[-1] and "x = 3" in answers[-1]
    first, second = requests(h)
    assert roles(second) == ["system", "user", "assistant", "tool"]
    asked, told = second["messages"][2], second["messages"][3]
    [call] = asked["tool_calls"]
    assert asked["content"] == "Let's check."
    assert call["function"]["name"] == "display_quiz"
    assert json.loads(call["function"]["arguments"]) == MIXED_QUIZ
    assert told["tool_call_id"] == call["id"]
    assert json.loads(told["content"]) == ["x = 3", "Divide both sides by 2."]
    assert "tools" in first and second["tools"] == first["tools"]


async def test_parallel_quiz_calls_from_ollama(harness: Harness) -> None:
    """Ollama sends every parallel call whole at index 0: two calls, two quizzes."""
    h = harness
    h.openai.chat.flavour = "ollama"
    second = {**MC_ONLY, "title": "Second"}
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY), quiz_call(second)]), Reply(text="Both right.")
    )
    event = await h.mention("two quizzes please")
    first_msg, second_msg = await wait_quizzes(h, event["ts"], 2)
    for msg in (first_msg, second_msg):
        await choose(h, msg, "4")
        await submit(h, msg)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "Both right." in answers[-1]
    last = requests(h)[-1]
    asked = last["messages"][2]
    ids = [c["id"] for c in asked["tool_calls"]]
    assert len(set(ids)) == 2
    assert [json.loads(c["function"]["arguments"])["title"] for c in asked["tool_calls"]] == [
        "Warm-up",
        "Second",
    ]
    # One tool message per call, in the calls' order.
    assert [(m["role"], m.get("tool_call_id")) for m in last["messages"][3:]] == [
        ("tool", ids[0]),
        ("tool", ids[1]),
    ]


@pytest.mark.parametrize("flavour", ["vllm", "ollama"])
async def test_a_malformed_tool_call_gets_an_error_result(harness: Harness, flavour: str) -> None:
    h = harness
    h.openai.chat.flavour = flavour
    h.openai.model.push(
        Reply(function_calls=[quiz_call('{"title": "Broken", "questions": [')]),
        Reply(text="Sorry, let me just explain instead."),
    )
    event = await h.mention("quiz me")
    [answer] = await h.wait_answers("C1", event["ts"], 1)
    assert "explain instead" in answer
    assert quiz_messages(h, event["ts"]) == []
    last = requests(h)[-1]["messages"]
    assert roles({"messages": last}) == ["system", "user", "assistant", "tool"]
    # The bad arguments are sent back as "{}" (servers parse them to render the prompt) and
    # the model is told what was wrong.
    assert last[2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "error" in json.loads(last[3]["content"])
    assert last[3]["tool_call_id"] == last[2]["tool_calls"][0]["id"]


async def test_a_new_message_closes_the_open_quiz_in_the_history(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Fractions!"))
    event = await h.mention("quiz")
    await wait_quizzes(h, event["ts"])
    await h.say("actually, explain fractions", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Fractions!" in answers[-1]
    last = requests(h)[-1]
    assert roles(last) == ["system", "user", "assistant", "tool", "user"]
    assert json.loads(last["messages"][3]["content"])["status"] == "skipped"


async def test_a_call_the_bot_never_recorded_is_answered_before_the_next_message(
    harness: Harness,
) -> None:
    """Never the 400 for tool calls without tool messages: a history left owing an output
    (a process that died between the model's answer and its quiz) is closed first."""
    h = harness
    event = await h.mention("hello")
    await h.wait_answers("C1", event["ts"], 1)
    conversation = await conversation_of(h, event["ts"])
    await h.stop()
    store = open_store(h.env["DATABASE_URL"])
    await store.open()
    try:
        lost_call = {
            "id": "call_lost",
            "type": "function",
            "function": {"name": "display_quiz", "arguments": json.dumps(MC_ONLY)},
        }
        await store.append_chat_messages(
            conversation,
            "chatrun_lost",
            [{"role": "assistant", "content": None, "tool_calls": [lost_call]}],
        )
    finally:
        await store.close()
    await h.start()
    await h.say("are you there?", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Echo: are you there?" in answers[-1]
    last = requests(h)[-1]["messages"]
    assert [m["role"] for m in last[-3:]] == ["assistant", "tool", "user"]
    assert last[-2]["tool_call_id"] == "call_lost"
    assert h.openai.violations == []


# -- history ---------------------------------------------------------------------------------


async def test_a_long_history_is_trimmed_to_the_budget(small_history: Harness) -> None:
    h = small_history
    long_question = "Tell me about this:" + " very long words" * 75
    event = await h.mention(long_question)
    await h.wait_answers("C1", event["ts"], 1)
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Correct!"))
    await h.say("quiz me", thread_ts=event["ts"])
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    await submit(h, quiz)
    await h.wait_answers("C1", event["ts"], 3)
    await h.say("and now?", thread_ts=event["ts"])
    await h.wait_answers("C1", event["ts"], 4)
    last = requests(h)[-1]["messages"]
    # The oldest exchange went; the instructions and the quiz exchange (call and result
    # together) stayed.
    assert [m["role"] for m in last] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert last[1]["content"] == "quiz me" and last[-1]["content"] == "and now?"
    assert long_question not in json.dumps(last)
    # Only the request is trimmed: the store keeps the whole conversation.
    assert h.bot is not None
    stored = await h.bot.store.chat_messages(await conversation_of(h, event["ts"]))
    assert stored[0].message["content"] == long_question


# -- restarts, stops, several processes -------------------------------------------------------


async def test_a_restart_mid_answer_asks_again_and_remembers_the_conversation(
    harness: Harness,
) -> None:
    h = harness
    event = await h.mention("my name is Ada")
    await h.wait_answers("C1", event["ts"], 1)
    text = (LONG * 4).strip()
    h.openai.chat.chunk_interval = 0.1  # about 2.4 s for the whole answer
    h.openai.model.push(Reply(text=text), Reply(text=text))
    await h.say("solve 3x + 11 = 14", thread_ts=event["ts"])
    # Restart once the answer is being shown.
    await h.slack.wait_for(lambda: h.slack.calls_to("chat.appendStream"))
    await h.restart()
    h.openai.chat.chunk_interval = 0.005
    # The student sees the answer once, whole: not doubled, nothing missing (the resumed
    # message is rewritten, then edited to the end).
    await h.slack.wait_for(lambda: message_text(replies(h, event["ts"])[-1]) == text, timeout=20)
    await h.settle()
    assert len(replies(h, event["ts"])) == 2
    assert message_text(replies(h, event["ts"])[-1]).count("then divide") == 4
    # Asked again after the restart, with the whole conversation from the store.
    again = requests(h)[-1]["messages"]
    assert [(m["role"], m["content"]) for m in again[1:]] == [
        ("user", "my name is Ada"),
        ("assistant", "Echo: my name is Ada"),
        ("user", "solve 3x + 11 = 14"),
    ]


async def test_an_answer_stopped_by_the_timeout_stays_in_the_history(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    h = Harness(fake_slack, fake_openai, tmp_path / "bot.db", "chat", RUN_TIMEOUT_SECONDS="1")
    await h.start()
    try:
        h.openai.chat.chunk_interval = 0.2  # about 5 s for the whole answer
        h.openai.model.push(Reply(text=LONG * 2))
        event = await h.mention("slow please")
        answers = await h.wait_answers("C1", event["ts"], 2)
        assert "too long" in answers[-1]
        h.openai.chat.chunk_interval = 0.005  # the next answer comes in well within the limit
        await h.say("go on", thread_ts=event["ts"])
        await h.slack.wait_for(
            lambda: any("Echo: go on" in a for a in h.answers("C1", event["ts"]))
        )
        last = requests(h)[-1]["messages"]
        assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
        # What the student saw of the stopped answer is what the model is told it said.
        said = last[2]["content"]
        assert said and (LONG * 2).startswith(said) and len(said) < len(LONG * 2)
        assert said.strip() in answers[0]
    finally:
        await h.stop()
    assert fake_openai.violations == []


async def test_a_quiz_answered_on_another_process(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, pg_schema: str
) -> None:
    a, b = (
        Harness(fake_slack, fake_openai, tmp_path / "unused.db", "chat", DATABASE_URL=pg_schema)
        for _ in range(2)
    )
    await a.start()
    await b.start()
    try:
        a.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Right: 4."))
        assert a.sender is not None
        event = app_mention(text="<@UBOT> quiz me", ts=next_ts())
        await a.sender.post_event(event)
        [quiz] = await wait_quizzes(a, event["ts"])
        # The clicks reach the other process, which continues from the shared history.
        await choose(b, quiz, "4")
        await submit(b, quiz)
        answers = await b.wait_answers("C1", event["ts"], 2)
        assert "Right: 4." in answers[-1]
        last = requests(b)[-1]
        assert roles(last) == ["system", "user", "assistant", "tool"]
        assert json.loads(last["messages"][3]["content"]) == ["4"]
        await a.settle()
        await b.settle()
    finally:
        await a.stop()
        await b.stop()
    assert fake_openai.violations == []


# -- files -----------------------------------------------------------------------------------


async def test_a_shared_pdf_is_read_by_the_bot(harness: Harness) -> None:
    h = harness
    pdf = make_pdf("Prime numbers have exactly two divisors.\nSeven is prime.")
    shared = h.slack.add_file(
        name="primes.pdf", content=pdf, mimetype="application/pdf", filetype="pdf"
    )
    event = await mention_with_files(h, "what does my paper say?", [shared])
    await h.wait_answers("C1", event["ts"], 1)
    user = requests(h)[-1]["messages"][-1]
    assert user["role"] == "user"
    assert user["content"].startswith("what does my paper say?")
    assert '--- begin file "primes.pdf" ---' in user["content"]
    assert "Seven is prime." in user["content"]
    assert h.openai.files == {}  # nothing uploaded: the server has no file store
    # Later turns still have it (it is part of the stored message); shared again, it is
    # neither downloaded nor read again.
    await h.say("and again", thread_ts=event["ts"], files=[shared])
    await h.wait_answers("C1", event["ts"], 2)
    assert "Seven is prime." in requests(h)[-1]["messages"][1]["content"]
    assert len(h.slack.downloads) == 1


async def test_a_picture_becomes_a_note(harness: Harness) -> None:
    h = harness
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
    picture = h.slack.add_file(name="graph.png", content=png, mimetype="image/png", filetype="png")
    event = await mention_with_files(h, "what does this graph show?", [picture])
    await h.wait_answers("C1", event["ts"], 1)
    user = requests(h)[-1]["messages"][-1]
    assert isinstance(user["content"], str)  # no image parts for a server that may lack vision
    assert '"graph.png"' in user["content"] and "cannot be read here" in user["content"]


async def test_a_file_read_before_a_restart_is_still_known_after_it(harness: Harness) -> None:
    h = harness
    notes = h.slack.add_file(
        name="notes.txt",
        content=b"The derivative of x^2 is 2x.",
        mimetype="text/plain",
        filetype="text",
    )
    event = await mention_with_files(h, "read my notes", [notes])
    await h.wait_answers("C1", event["ts"], 1)
    await h.restart()
    await h.say("read them again", thread_ts=event["ts"], files=[notes])
    await h.wait_answers("C1", event["ts"], 2)
    # The file's text is kept with its id: shared again, it is neither fetched nor read again.
    again = requests(h)[-1]["messages"][-1]["content"]
    assert again.startswith("read them again") and "2x" in again
    assert len(h.slack.downloads) == 1
