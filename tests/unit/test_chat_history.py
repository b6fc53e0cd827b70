"""Trimming a stored chat conversation to a token budget."""

from __future__ import annotations

import pytest

from bot.runtime._chat_history import (
    CUT_MARKER,
    MIN_KEPT_CHARS,
    estimate_tokens,
    trim_history,
)

SYSTEM = {"role": "system", "content": "You are a math tutor."}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def calls(*ids):
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "display_quiz", "arguments": "{}"}}
            for i in ids
        ],
    }


def result(call_id, text="ok"):
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def cost(*messages):
    return sum(estimate_tokens(m) for m in messages)


# Five exchanges; the third has a quiz (two calls and their results).
E1 = [user("q1 " * 40), assistant("a1 " * 40)]
E2 = [user("q2 " * 40), assistant("a2 " * 40)]
E3 = [user("quiz me"), calls("c1", "c2"), result("c1", "x" * 400), result("c2"), assistant("ok")]
E4 = [user("q4 " * 40), assistant("a4 " * 40)]
NOW = [user("what is 2+2?")]
CONVERSATION = [SYSTEM, *E1, *E2, *E3, *E4, *NOW]


@pytest.mark.parametrize(
    ("budget", "kept"),
    [
        (10**6, [SYSTEM, *E1, *E2, *E3, *E4, *NOW]),
        (cost(SYSTEM, *E1, *E2, *E3, *E4, *NOW), [SYSTEM, *E1, *E2, *E3, *E4, *NOW]),
        (cost(SYSTEM, *E1, *E2, *E3, *E4, *NOW) - 1, [SYSTEM, *E2, *E3, *E4, *NOW]),
        (cost(SYSTEM, *E3, *E4, *NOW), [SYSTEM, *E3, *E4, *NOW]),
        # One token short of the quiz exchange: its calls and results go together.
        (cost(SYSTEM, *E3, *E4, *NOW) - 1, [SYSTEM, *E4, *NOW]),
        (cost(SYSTEM, *NOW), [SYSTEM, *NOW]),
        (1, [SYSTEM, *NOW]),  # the instructions and the question always stay
    ],
)
def test_oldest_exchanges_go_first(budget, kept):
    trimmed = trim_history(CONVERSATION, budget)
    assert trimmed.messages == kept
    assert trimmed.dropped == len(CONVERSATION) - len(kept)
    assert trimmed.cut_chars == 0
    assert trimmed.tokens == cost(*kept)


def test_no_holes_a_small_old_exchange_does_not_skip_a_big_newer_one():
    small = [user("hi"), assistant("hello")]
    big = [user("x" * 4000), assistant("y")]
    messages = [SYSTEM, *small, *big, *NOW]
    trimmed = trim_history(messages, cost(SYSTEM, *small, *NOW) + 10)
    assert trimmed.messages == [SYSTEM, *NOW]


def test_the_current_turn_keeps_its_tool_calls_and_results():
    turn = [user("quiz me"), calls("c1"), result("c1", "r" * 4000)]
    trimmed = trim_history([SYSTEM, *E1, *turn], cost(SYSTEM, *turn))
    assert trimmed.messages == [SYSTEM, *turn]


def test_the_kept_conversation_starts_with_a_user_message():
    greeting = assistant("Hi! I'm your tutor.")
    orphan = result("c0")  # its call was lost: no server would take it
    trimmed = trim_history([SYSTEM, greeting, orphan, *E1, *NOW], 10**6)
    assert trimmed.messages == [SYSTEM, *E1, *NOW]
    assert trimmed.dropped == 2


@pytest.mark.parametrize(
    "instructions",
    [[], [SYSTEM], [SYSTEM, {"role": "developer", "content": "Be brief."}]],
)
def test_instructions_are_never_dropped(instructions):
    trimmed = trim_history([*instructions, *E1, *NOW], 1)
    assert trimmed.messages == [*instructions, *NOW]


def test_without_a_user_message_nothing_is_dropped():
    messages = [SYSTEM, assistant("Hello")]
    assert trim_history(messages, 1).messages == messages


def test_an_oversized_question_is_cut_in_the_middle_with_a_marker():
    question = "QUESTION START " + "lorem ipsum " * 5000 + " QUESTION END?"
    budget = cost(SYSTEM) + 1000
    trimmed = trim_history([SYSTEM, *E1, user(question)], budget)
    [system, kept] = trimmed.messages
    text = kept["content"]
    assert system == SYSTEM
    assert text.startswith("QUESTION START") and text.endswith("QUESTION END?")
    assert "characters of this message were left out" in text
    marker = CUT_MARKER.format(cut=f"{trimmed.cut_chars:,}")
    head, tail = text.split(marker)
    assert question.startswith(head) and question.endswith(tail)
    assert len(head) + len(tail) == len(question) - trimmed.cut_chars
    assert trimmed.tokens <= budget
    assert trimmed.dropped == len(E1)


def test_a_cut_question_keeps_a_floor_however_small_the_budget():
    question = "z" * (MIN_KEPT_CHARS * 5)
    trimmed = trim_history([SYSTEM, user(question)], 1)
    text = trimmed.messages[1]["content"]
    assert text.count("z") == MIN_KEPT_CHARS
    assert trimmed.cut_chars == len(question) - MIN_KEPT_CHARS


def test_a_question_with_parts_has_its_longest_text_cut():
    parts = [
        {"type": "text", "text": "Look at this:"},
        {"type": "text", "text": "p" * 40000},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    original = user(parts)
    trimmed = trim_history([SYSTEM, original], cost(SYSTEM) + 3000)
    kept = trimmed.messages[1]["content"]
    assert kept[0] == parts[0] and kept[2] == parts[2]
    assert len(kept[1]["text"]) < 40000 and "left out" in kept[1]["text"]
    assert original["content"][1]["text"] == "p" * 40000  # the stored message is untouched


def test_input_is_not_changed():
    messages = [dict(m) for m in CONVERSATION]
    trim_history(messages, 1)
    assert messages == CONVERSATION


@pytest.mark.parametrize(
    ("small", "large"),
    [
        (user("a"), user("a" * 400)),
        (assistant("x"), calls("c1")),
        (calls("c1"), calls("c1", "c2")),
        (user([{"type": "text", "text": "a"}]), user([{"type": "image_url", "image_url": {}}])),
        (result("c1", ""), result("c1", "x" * 100)),
    ],
)
def test_estimates_grow_with_content(small, large):
    assert 0 < estimate_tokens(small) < estimate_tokens(large)
