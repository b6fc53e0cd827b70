"""Turn a quiz's answers into what the model reads, and check what the student typed.

Answers are stored as text: the chosen choice's text for multiple choice (``choice_answer``),
the stripped typed text for free response. That is also what the tool output carries, as the
original notebook's ``display_quiz`` did: a JSON list of strings in question order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.domain import QuestionType, Quiz
from bot.quiz.blocks import QuizPayloadError
from bot.quiz.schema import MAX_ANSWER_CHARS

SKIPPED_MESSAGE = (
    "The student moved on without answering this quiz and sent a new message instead. "
    "Do not grade or repeat the quiz; answer their new message."
)
NO_ANSWER_TEXT = "(no answer)"


def tool_output_for(quiz: Quiz) -> str:
    """The ``display_quiz`` tool output: a JSON list of the answers, in question order.

    Raises ``ValueError`` if a question has no answer (submit only complete quizzes).
    """
    if len(quiz.answers) != len(quiz.questions) or not quiz.is_complete:
        raise ValueError(f"quiz {quiz.id} is not fully answered")
    return json.dumps(list(quiz.answers), ensure_ascii=False)


def skipped_output() -> str:
    """The tool output for a quiz the student skipped by writing a new message."""
    return json.dumps({"status": "skipped", "message": SKIPPED_MESSAGE}, ensure_ascii=False)


def answers_as_user_message(quizzes: Sequence[Quiz]) -> str:
    """The answers as a plain-text user message, for when the run can no longer take outputs."""
    parts = [
        "Here are my answers to the quiz"
        + ("zes" if len(quizzes) > 1 else "")
        + " (it expired before they could be submitted):"
    ]
    for quiz in quizzes:
        lines = [f'Quiz "{quiz.title}":']
        for index, question in enumerate(quiz.questions):
            answer = quiz.answers[index] if index < len(quiz.answers) else None
            lines.append(f"{index + 1}. {question.text}")
            if question.type is QuestionType.MULTIPLE_CHOICE:
                lines.append(f"   Choices: {' | '.join(question.choices)}")
            lines.append(f"   My answer: {_indent(answer) if answer else NO_ANSWER_TEXT}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def validate_free_answer(text: str | None) -> str | None:
    """A field error for the free-response modal, or None when ``text`` is acceptable.

    Judged on the stripped text, which is what should be stored.
    """
    stripped = (text or "").strip()
    if not stripped:
        return "Please write an answer before saving."
    if len(stripped) > MAX_ANSWER_CHARS:
        return (
            f"Your answer is {len(stripped):,} characters long; "
            f"please keep it to {MAX_ANSWER_CHARS:,}."
        )
    return None


def choice_answer(quiz: Quiz, question_index: int, choice_index: int) -> str:
    """The answer to record for a clicked choice: the choice's text.

    Raises ``QuizPayloadError`` when the indices do not name a choice of this quiz.
    """
    if not 0 <= question_index < len(quiz.questions):
        raise QuizPayloadError(f"quiz {quiz.id} has no question {question_index}")
    question = quiz.questions[question_index]
    if question.type is not QuestionType.MULTIPLE_CHOICE:
        raise QuizPayloadError(f"quiz {quiz.id} question {question_index} is not multiple choice")
    if not 0 <= choice_index < len(question.choices):
        raise QuizPayloadError(
            f"quiz {quiz.id} question {question_index} has no choice {choice_index}"
        )
    return question.choices[choice_index]


def _indent(text: str) -> str:
    return text.replace("\n", "\n   ")
