"""Interactive quizzes end to end: display_quiz -> Block Kit -> clicks/modal -> tool output."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bot.domain import QuizStatus
from tests.e2e.conftest import Harness
from tests.fakes.openai_model import FunctionCall, Reply
from tests.fakes.slack_payloads import block_actions, view_submission
from tests.fakes.slack_server import message_text

MIXED_QUIZ = {
    "title": "Linear equations",
    "questions": [
        {
            "question_text": "Solve 2x = 6",
            "question_type": "MULTIPLE_CHOICE",
            "choices": ["x = 2", "x = 3", "x = 4"],
        },
        {"question_text": "Explain how you isolate x.", "question_type": "FREE_RESPONSE"},
    ],
}
MC_ONLY = {
    "title": "Warm-up",
    "questions": [
        {"question_text": "2 + 2?", "question_type": "MULTIPLE_CHOICE", "choices": ["3", "4"]}
    ],
}


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def quiz_call(args: dict[str, Any] | str) -> FunctionCall:
    return FunctionCall(
        name="display_quiz", arguments=args if isinstance(args, str) else json.dumps(args)
    )


def buttons(msg: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        el
        for block in msg.get("blocks") or []
        if block.get("type") == "actions"
        for el in block.get("elements", [])
    ]


def button(msg: dict[str, Any], *, starts: str, text: str | None = None) -> dict[str, Any]:
    for el in buttons(msg):
        if el["action_id"].startswith(starts) and (text is None or text in el["text"]["text"]):
            return el
    raise AssertionError(f"no {starts} button {text!r} in {json.dumps(msg.get('blocks'))[:800]}")


def quiz_messages(h: Harness, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    return [
        m
        for m in h.slack.bot_messages(channel, thread_ts)
        if any(b.get("type") == "header" for b in m.get("blocks") or [])
    ]


def has_actions(message: dict[str, Any] | None) -> bool:
    return any(b.get("type") == "actions" for b in (message or {}).get("blocks") or [])


async def wait_quizzes(h: Harness, thread_ts: str, count: int = 1) -> list[dict[str, Any]]:
    return await h.slack.wait_for(
        lambda: (q := quiz_messages(h, thread_ts)) and len(q) >= count and q
    )


async def click(
    h: Harness, msg: dict[str, Any], el: dict[str, Any], *, user: str = "U1", channel: str = "C1"
) -> None:
    assert h.sender is not None
    fresh = h.slack.find_message(channel, msg["ts"]) or msg
    payload = block_actions(
        action_id=el["action_id"],
        value=el["value"],
        message=fresh,
        user=user,
        channel=channel,
        trigger_id=h.slack.new_trigger_id(user),
    )
    result = await h.sender.post_interaction(payload)
    assert result.status == 200, result.body


async def choose(h: Harness, quiz: dict[str, Any], choice: str) -> None:
    """Click a choice and wait until the quiz message shows it picked."""
    await click(h, quiz, button(quiz, starts="quiz_choice", text=choice))
    await h.slack.wait_for(lambda: f"✓ {choice}" in dump(h.slack.find_message("C1", quiz["ts"])))


async def submit(h: Harness, quiz: dict[str, Any]) -> None:
    """Press the quiz's Submit button, as the message shows it now."""
    current = h.slack.find_message("C1", quiz["ts"]) or quiz
    await click(h, quiz, button(current, starts="quiz_submit"))


async def answer_free(
    h: Harness, msg: dict[str, Any], text: str, *, user: str = "U1", metadata: str | None = None
) -> dict[str, Any]:
    """Open the free-response modal with its button and submit ``text``; returns the ack body."""
    assert h.sender is not None
    opened = len(h.slack.views)
    await click(h, msg, button(msg, starts="quiz_free_open"), user=user)
    await h.slack.wait_for(lambda: len(h.slack.views) > opened)
    view = h.slack.views[-1]["view"]
    result = await h.sender.post_interaction(
        view_submission(
            view=view,
            values={"answer": {"answer_input": text}},
            user=user,
            private_metadata=metadata,
        )
    )
    assert result.status == 200, result.body
    return json.loads(result.body) if result.body.strip() else {}


async def test_quiz_answered_by_button_and_modal(harness: Harness) -> None:
    h = harness
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MIXED_QUIZ)]), Reply(text="Both right — well done!")
    )
    event = await h.mention("quiz me on equations")
    [quiz] = await wait_quizzes(h, event["ts"])
    assert "Linear equations" in message_text(quiz)
    # Pick a wrong answer, change it: the choice stays changeable and visible until submitted.
    await choose(h, quiz, "x = 2")
    await choose(h, quiz, "x = 3")
    ack = await answer_free(h, quiz, "  Divide both sides by 2.  ")
    assert ack.get("response_action") != "errors"
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "well done" in answers[-1]
    [output] = h.openai.tool_outputs()
    assert json.loads(output["output"]) == ["x = 3", "Divide both sides by 2."]
    closed = h.slack.find_message("C1", quiz["ts"])
    assert closed is not None and buttons(closed) == []
    assert "x = 3" in message_text(closed)


async def test_a_modal_answer_with_unencodable_characters_is_cleaned(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MIXED_QUIZ)]), Reply(text="Thanks!"))
    event = await h.mention("quiz me on equations")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "x = 3")
    ack = await answer_free(h, quiz, "Divide\x00 by 2 \ud800")
    assert ack.get("response_action") != "errors", ack
    await submit(h, quiz)
    await h.wait_answers("C1", event["ts"], 2)
    [output] = h.openai.tool_outputs()
    assert json.loads(output["output"]) == ["x = 3", "Divide by 2 \ufffd"]


async def test_two_quiz_calls_in_one_run_submit_together(harness: Harness) -> None:
    h = harness
    second = {**MC_ONLY, "title": "Second"}
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY), quiz_call(second)]),
        Reply(text="Feedback on both"),
    )
    event = await h.mention("two quizzes please")
    first_msg, second_msg = await wait_quizzes(h, event["ts"], 2)
    for msg in (first_msg, second_msg):
        await choose(h, msg, "4")
    await submit(h, first_msg)
    await harness.settle()
    assert h.openai.tool_outputs() == []  # nothing goes until every quiz of the run is in
    await submit(h, second_msg)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "Feedback on both" in answers[-1]
    outputs = h.openai.tool_outputs()
    assert [json.loads(o["output"]) for o in outputs] == [["4"], ["4"]]


async def test_invalid_arguments_get_an_error_output_the_model_can_fix(harness: Harness) -> None:
    h = harness
    bad = {
        "title": "Broken",
        "questions": [
            {"question_text": "Pick", "question_type": "MULTIPLE_CHOICE", "choices": ["only one"]}
        ],
    }
    h.openai.model.push(
        Reply(function_calls=[quiz_call("{not json")]),
        Reply(function_calls=[quiz_call(bad)]),
        Reply(function_calls=[quiz_call({"title": "No questions", "questions": []})]),
        Reply(text="Sorry, let me just explain instead."),
    )
    event = await h.mention("quiz me")
    answers = await h.wait_answers("C1", event["ts"], 1)
    assert "explain instead" in answers[-1]
    errors = [json.loads(o["output"]) for o in h.openai.tool_outputs()]
    assert len(errors) == 3
    assert all("error" in e for e in errors)
    assert "choices" in errors[1]["error"]
    assert quiz_messages(h, event["ts"]) == []
    assert not [
        c for c in h.slack.calls if c.response and c.response.get("error") == "invalid_blocks"
    ]


async def test_click_after_a_restart_still_works(harness: Harness) -> None:
    h = harness
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Correct after restart")
    )
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    await h.restart()
    await choose(h, quiz, "4")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Correct after restart" in answers[-1]


async def test_new_message_while_a_quiz_is_open_skips_it(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    if h.runtime == "assistants":
        # The skip output lets the waiting run finish; its words are not posted.
        h.openai.model.push(Reply(text="OK, moving on (not posted)"))
    h.openai.model.push(Reply(text="About fractions..."))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    choice = button(quiz, starts="quiz_choice", text="4")
    await h.say("actually, explain fractions", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "About fractions" in answers[-1]
    assert "not posted" not in dump(h.slack.messages)
    [output] = h.openai.tool_outputs()
    assert json.loads(output["output"])["status"] == "skipped"
    closed = h.slack.find_message("C1", quiz["ts"])
    assert closed is not None and buttons(closed) == []
    assert "skipped" in message_text(closed).lower()
    # A late click on the skipped quiz is explained, not recorded.
    await click(h, quiz, choice)
    note = await h.slack.wait_for(lambda: h.slack.ephemerals)
    assert "skipped" in json.dumps(note).lower()


async def test_double_clicks_and_strangers(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Nice."))
    event = await h.mention("quiz", user="U1")
    [quiz] = await wait_quizzes(h, event["ts"])
    # Someone else tries to answer: told it's not theirs, nothing recorded.
    await click(h, quiz, button(quiz, starts="quiz_choice", text="3"), user="U2")
    note = await h.slack.wait_for(lambda: [e for e in h.slack.ephemerals if e.get("user") == "U2"])
    assert "<@U1>" in json.dumps(note)
    await choose(h, quiz, "4")
    submit_button = button(h.slack.find_message("C1", quiz["ts"]) or quiz, starts="quiz_submit")
    await asyncio.gather(click(h, quiz, submit_button), click(h, quiz, submit_button))
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Nice." in answers[-1]
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]
    await h.slack.wait_for(lambda: [e for e in h.slack.ephemerals if e.get("user") == "U1"])


async def test_a_click_on_a_quiz_posted_a_moment_ago_counts(harness: Harness) -> None:
    """The quiz is on screen before the bot has recorded its message (Slack's answer to the
    post is slow): a quick click waits for that record instead of "can't find that quiz"."""
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Nice."))
    h.slack.answer_late_next("chat.postMessage", 0.6)
    event = await h.mention("quiz", user="U1")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    assert not [e for e in h.slack.ephemerals if e.get("user") == "U1"]
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Nice." in answers[-1]
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]


async def test_a_submission_whose_process_stopped_half_way_is_finished_by_the_next_click(
    harness: Harness,
) -> None:
    """A process records a Submit click, then dies before it queues the answers: the quiz
    still shows its buttons. The student's next click finishes the job (the chaos soak
    lost such a quiz)."""
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Nice."))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    assert h.bot is not None
    [recorded] = await h.bot.store.list_quizzes()
    # What the stopped process got done: the submission recorded, nothing queued.
    assert await h.bot.store.transition_quizzes(
        [recorded.id], QuizStatus.ANSWERED, from_statuses=[QuizStatus.OPEN]
    )
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "Nice." in answers[-1]
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]
    await h.slack.wait_for(lambda: not has_actions(h.slack.find_message("C1", quiz["ts"])))


async def test_submit_before_answering_everything_is_explained(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MIXED_QUIZ)]))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    await click(h, quiz, button(quiz, starts="quiz_submit"))
    note = await h.slack.wait_for(lambda: h.slack.ephemerals)
    assert "every question" in json.dumps(note)
    assert h.openai.tool_outputs() == []


async def test_modal_field_errors_and_tampering(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MIXED_QUIZ)]))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    empty = await answer_free(h, quiz, "   ")
    assert empty["response_action"] == "errors" and "answer" in empty["errors"]
    too_long = await answer_free(h, quiz, "x" * 3001)
    assert too_long["response_action"] == "errors"
    for metadata in ('{"quiz_id": 999999, "question": 1}', "not json", '{"quiz_id": "1; drop"}'):
        tampered = await answer_free(h, quiz, "an answer", metadata=metadata)
        assert tampered["response_action"] == "errors"
    # A stranger cannot answer through a forged modal either.
    view = h.slack.views[-1]["view"]
    assert h.sender is not None
    forged = await h.sender.post_interaction(
        view_submission(view=view, values={"answer": {"answer_input": "forged"}}, user="U2")
    )
    assert json.loads(forged.body)["response_action"] == "errors"
    assert "forged" not in dump(h.slack.find_message("C1", quiz["ts"]))
    assert h.openai.tool_outputs() == []


async def test_expired_trigger_asks_to_click_again(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MIXED_QUIZ)]))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    assert h.sender is not None
    trigger = h.slack.new_trigger_id("U1")
    h.slack.expire_trigger(trigger)
    el = button(quiz, starts="quiz_free_open")
    payload = block_actions(
        action_id=el["action_id"], value=el["value"], message=quiz, trigger_id=trigger
    )
    result = await h.sender.post_interaction(payload)
    assert result.status == 200
    note = await h.slack.wait_for(lambda: h.slack.ephemerals)
    assert "click" in json.dumps(note).lower()


async def test_tampered_button_values_are_rejected(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    assert h.sender is not None
    for action_id, value in [
        ("quiz_choice:0:7", "1:0:7"),
        ("quiz_choice:0:1", "999:0:1"),
        ("quiz_choice:0:1", "garbage"),
        ("quiz_submit", "-1"),
    ]:
        result = await h.sender.post_interaction(
            block_actions(action_id=action_id, value=value, message=quiz)
        )
        assert result.status == 200
    await harness.settle()
    assert "✓" not in dump(h.slack.find_message("C1", quiz["ts"]))
    assert h.openai.tool_outputs() == []


async def test_slash_command_quiz(harness: Harness) -> None:
    h = harness
    assert h.sender is not None
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    result = await h.sender.post_command("quiz fractions")
    assert result.status == 200
    parent = await h.slack.wait_for(
        lambda: [m for m in h.slack.bot_messages("C1") if "quiz on" in (m.get("text") or "")]
    )
    await wait_quizzes(h, parent[0]["ts"])
    assert "fractions" in h.openai.user_messages()[0]


@pytest.mark.parametrize("runtime", ["assistants"])
async def test_answers_after_the_run_expired_go_in_as_a_message(harness: Harness) -> None:
    h = harness
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Thanks — 4 is right.")
    )
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    h.openai.clock.advance(601)  # requires_action runs expire 10 minutes after creation
    await choose(h, quiz, "4")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "4 is right" in answers[-1]
    assert any("new message" in a for a in answers)  # the student is told
    assert h.openai.tool_outputs() == []
    assert "My answer: 4" in h.openai.user_messages()[-1]
    closed = h.slack.find_message("C1", quiz["ts"])
    assert closed is not None and buttons(closed) == []
    assert "expired" in message_text(closed)


@pytest.mark.parametrize("runtime", ["assistants"])
async def test_quiz_answered_within_the_run_lifetime_after_a_pause(harness: Harness) -> None:
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="In time!"))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    h.openai.clock.advance(540)  # nine minutes: still in time
    await choose(h, quiz, "4")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 2)
    assert "In time!" in answers[-1]
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]


async def test_restart_while_the_feedback_run_works(harness: Harness) -> None:
    h = harness
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Feedback survived", latency=2.0)
    )
    if h.runtime == "chat":  # a chat server keeps nothing: it is asked again after the restart
        h.openai.model.push(Reply(text="Feedback survived"))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    await submit(h, quiz)
    await h.slack.wait_for(lambda: h.openai.tool_outputs())
    await h.restart()
    answers = await h.wait_answers("C1", event["ts"], 2, timeout=20)
    assert "Feedback survived" in answers[-1]
    await harness.settle()
    assert sum("Feedback survived" in a for a in h.answers("C1", event["ts"])) == 1
    assert len(h.openai.tool_outputs()) == 1
    assert "Submitted" in message_text(h.slack.find_message("C1", quiz["ts"]) or {})


async def test_answers_being_resent_when_the_process_died_are_resent(harness: Harness) -> None:
    """Killed between marking a quiz expired and resending its answers: nothing is lost."""
    from bot.domain import QuizStatus, TurnKind, TurnStatus
    from store import open_store

    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    await choose(h, quiz, "4")
    await h.stop()
    # The state a kill -9 leaves mid-resend, written through the store's own API.
    store = open_store(h.env["DATABASE_URL"])
    await store.open()
    try:
        [stored] = await store.list_quizzes()
        assert stored.remote_run_id is not None
        await store.transition_quizzes(
            [stored.id], QuizStatus.EXPIRED, from_statuses=[QuizStatus.OPEN]
        )
        turn = await store.enqueue_turn(
            stored.thread_id,
            TurnKind.QUIZ_ANSWERS,
            user_id="U1",
            text=stored.remote_run_id,
            message_ts=f"quiz:{stored.remote_run_id}",
            parent_turn_id=stored.turn_id,
        )
        assert turn is not None
        await store.update_turn(turn.id, status=TurnStatus.RUNNING, attempts=1)
    finally:
        await store.close()
    h.openai.clock.advance(601)  # the Assistants run expired meanwhile (no-op for Responses)
    h.openai.model.push(Reply(text="Got your answers: 4 is right."))
    await h.start()
    answers = await h.wait_answers("C1", event["ts"], 3)  # the quiz, a note, the answer
    assert "4 is right" in answers[-1]
    assert "My answer: 4" in h.openai.user_messages()[-1]


async def test_a_failed_start_while_a_quiz_is_open_does_not_wedge_the_thread(
    harness: Harness,
) -> None:
    """Issue 13, bug 1: the skipped quiz's output is owed until a start goes through."""
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    event = await h.mention("quiz me")
    await wait_quizzes(h, event["ts"])
    # The model service fails the next start after all of the SDK's retries.
    path = {"responses": "/responses", "assistants": "/runs", "chat": "/chat/completions"}
    path = path[h.runtime]
    h.openai.fail_next(path, status=500, count=4, method="POST")
    await h.say("actually, explain fractions", thread_ts=event["ts"])
    failed = await h.wait_answers("C1", event["ts"], 2)  # the quiz, then the failure note
    assert "couldn't reach the model service" in failed[-1]
    await h.settle()
    # The service is healthy again: the next message works, and the skipped quiz's output
    # reached the model exactly once, with that message.
    if h.runtime == "assistants":
        h.openai.model.push(Reply(text="(the skipped run ends; not posted)"))
    h.openai.model.push(Reply(text="Fractions are parts of a whole."))
    await h.say("explain fractions please", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "parts of a whole" in answers[-1]
    outputs = h.openai.tool_outputs()
    if h.runtime == "chat":
        # A chat server gets the whole stored conversation: the output is in it, once, before
        # the message that failed (which the fake does not count as new input).
        messages = h.openai.chat.requests[-1]["messages"]
        outputs = [{"output": m["content"]} for m in messages if m["role"] == "tool"]
    assert len(outputs) == 1 and json.loads(outputs[0]["output"])["status"] == "skipped"


async def test_fast_re_clicks_leave_the_stored_pick_on_screen(harness: Harness) -> None:
    """Issue 13, bug 2: two refreshes of one quiz can land in either order; the message
    must end up showing what is stored."""
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]), Reply(text="Checked."))
    event = await h.mention("quiz")
    [quiz] = await wait_quizzes(h, event["ts"])
    h.slack.delay_next("chat.update", 0.3)  # the first click's refresh lands late
    await click(h, quiz, button(quiz, starts="quiz_choice", text="3"))
    await asyncio.sleep(0.05)  # the second click arrives while the first refresh is in flight
    await click(h, quiz, button(quiz, starts="quiz_choice", text="4"))
    await h.settle()
    shown = h.slack.find_message("C1", quiz["ts"])
    assert "✓ 4" in dump(shown) and "✓ 3" not in dump(shown)
    await submit(h, quiz)
    await h.wait_answers("C1", event["ts"], 2)
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]


async def test_someone_elses_message_waits_while_a_students_quiz_is_open(
    harness: Harness,
) -> None:
    """Issue 10: a classmate's question does not skip the student's quiz; it is answered
    after the quiz's feedback, in order."""
    h = harness
    h.openai.model.push(
        Reply(function_calls=[quiz_call(MC_ONLY)]),
        Reply(text="Right, 4. Well done!"),
        Reply(text="Hi U2, fractions are parts of a whole."),
    )
    event = await h.mention("quiz me", user="U1")
    [quiz] = await wait_quizzes(h, event["ts"])
    await h.mention("what are fractions?", user="U2", thread_ts=event["ts"])
    await asyncio.sleep(1.0)  # well past the ordering hold: it would have started by now
    assert h.answers("C1", event["ts"]) == [message_text(quiz)]
    assert h.openai.tool_outputs() == []
    current = h.slack.find_message("C1", quiz["ts"])
    assert current is not None and buttons(current), "the quiz is still open"
    await choose(h, quiz, "4")
    await submit(h, quiz)
    answers = await h.wait_answers("C1", event["ts"], 3)
    assert "Well done" in answers[1] and "parts of a whole" in answers[2]
    assert [json.loads(o["output"]) for o in h.openai.tool_outputs()] == [["4"]]


async def test_someone_elses_message_stops_waiting_for_a_forgotten_quiz(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait is bounded (``QUIZ_WAIT``): then the quiz is skipped and the classmate
    answered."""
    import bot.core.workers as workers

    monkeypatch.setattr(workers, "QUIZ_WAIT", 1.0)
    h = harness
    h.openai.model.push(Reply(function_calls=[quiz_call(MC_ONLY)]))
    if h.runtime == "assistants":
        h.openai.model.push(Reply(text="(the skipped run ends; not posted)"))
    h.openai.model.push(Reply(text="Fractions are parts of a whole."))
    event = await h.mention("quiz me", user="U1")
    [quiz] = await wait_quizzes(h, event["ts"])
    await h.mention("what are fractions?", user="U2", thread_ts=event["ts"])
    answers = await h.wait_answers("C1", event["ts"], 2, timeout=15)
    assert "parts of a whole" in answers[-1]
    [output] = h.openai.tool_outputs()
    assert json.loads(output["output"])["status"] == "skipped"
    closed = h.slack.find_message("C1", quiz["ts"])
    assert closed is not None and buttons(closed) == []
