"""Quiz answers: tool outputs, the expired-run message, free-response checks."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from bot.domain import Question, QuestionType, Quiz, QuizStatus
from bot.quiz.answers import (
    answers_as_user_message,
    choice_answer,
    skipped_output,
    tool_output_for,
    validate_free_answer,
)
from bot.quiz.blocks import QuizPayloadError

MC = QuestionType.MULTIPLE_CHOICE
FREE = QuestionType.FREE_RESPONSE
QUESTIONS = [
    Question("1/2 + 1/4?", MC, ("3/4", "2/6")),
    Question("Why?", FREE),
]


def make_quiz(
    answers: Sequence[str | None],
    questions: Sequence[Question] = QUESTIONS,
    title: str = "Fractions",
) -> Quiz:
    return Quiz(
        id=1,
        turn_id=1,
        thread_id=1,
        call_id="call_1",
        title=title,
        questions=list(questions),
        answers=list(answers),
        status=QuizStatus.OPEN,
        channel="C1",
    )


# -- tool_output_for ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["3/4", "Because halves are quarters."], ["3/4", "Because halves are quarters."]),
        (["2/6", '½ = 2/4 — "so"\nthen <3/4>'], ["2/6", '½ = 2/4 — "so"\nthen <3/4>']),
    ],
)
def test_tool_output_is_a_json_list_of_answers(answers: list[str], expected: list[str]) -> None:
    output = tool_output_for(make_quiz(answers))
    assert json.loads(output) == expected


def test_tool_output_keeps_unicode_readable() -> None:
    assert "½" in tool_output_for(make_quiz(["3/4", "½"]))


@pytest.mark.parametrize(
    "answers",
    [[None, None], ["3/4", None], [None, "x"], ["3/4"]],
)
def test_tool_output_requires_every_answer(answers: list[str | None]) -> None:
    with pytest.raises(ValueError, match="not fully answered"):
        tool_output_for(make_quiz(answers))


def test_skipped_output() -> None:
    output = json.loads(skipped_output())
    assert output["status"] == "skipped"
    assert "moved on" in output["message"]
    assert "new message" in output["message"]


# -- answers_as_user_message -------------------------------------------------------------


def test_answers_as_user_message_one_quiz() -> None:
    text = answers_as_user_message([make_quiz(["3/4", "Halves\nare quarters"])])
    assert text == (
        "Here are my answers to the quiz (it expired before they could be submitted):\n\n"
        'Quiz "Fractions":\n'
        "1. 1/2 + 1/4?\n"
        "   Choices: 3/4 | 2/6\n"
        "   My answer: 3/4\n"
        "2. Why?\n"
        "   My answer: Halves\n"
        "   are quarters"
    )


def test_answers_as_user_message_several_quizzes_and_missing_answers() -> None:
    text = answers_as_user_message(
        [
            make_quiz(["2/6", None]),
            make_quiz(["42"], [Question("6*7?", FREE)], title="Times"),
        ]
    )
    assert text.startswith("Here are my answers to the quizzes")
    assert 'Quiz "Fractions":' in text and 'Quiz "Times":' in text
    assert "My answer: (no answer)" in text
    assert "1. 6*7?\n   My answer: 42" in text
    assert text.index("Fractions") < text.index("Times")


# -- validate_free_answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (None, "Please write an answer"),
        ("", "Please write an answer"),
        ("   \n\t ", "Please write an answer"),
        ("x" * 3001, "3,001 characters"),
        ("  " + "x" * 3001 + "  ", "keep it to 3,000"),
    ],
)
def test_validate_free_answer_errors(text: str | None, error: str) -> None:
    message = validate_free_answer(text)
    assert message is not None and error in message


@pytest.mark.parametrize(
    "text",
    ["x", "  42  ", "x" * 3000, "\n" + "x" * 3000 + "\n", "<@U1> & <!channel>", "½"],
)
def test_validate_free_answer_accepts(text: str) -> None:
    assert validate_free_answer(text) is None


# -- choice_answer -----------------------------------------------------------------------


@pytest.mark.parametrize(("choice_index", "expected"), [(0, "3/4"), (1, "2/6")])
def test_choice_answer_is_the_choice_text(choice_index: int, expected: str) -> None:
    assert choice_answer(make_quiz([None, None]), 0, choice_index) == expected


@pytest.mark.parametrize(
    ("question_index", "choice_index", "match"),
    [
        (2, 0, "no question"),
        (-1, 0, "no question"),
        (1, 0, "not multiple choice"),
        (0, 2, "no choice"),
        (0, -1, "no choice"),
    ],
)
def test_choice_answer_rejects_bad_indices(
    question_index: int, choice_index: int, match: str
) -> None:
    with pytest.raises(QuizPayloadError, match=match):
        choice_answer(make_quiz([None, None]), question_index, choice_index)
