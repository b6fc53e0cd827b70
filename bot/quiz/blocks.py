"""Block Kit for quizzes: the open quiz message, its closed form, the free-response modal,
and parsing of the interaction payloads they produce.

Everything returns plain dicts (what ``chat.postMessage``/``views.open`` take). Text from the
model or the student is escaped before it goes into mrkdwn, so it cannot mention people or
channels or make links, and every text is cut to its Block Kit limit as a second line of
defence behind ``bot.quiz.validate``.

Interaction ids: ``action_id`` must be unique within a message, so it carries the indices
(``quiz_choice:0:1``); the ``value`` carries the quiz id as well (``42:0:1``). Handlers
register with the ``*_PATTERN`` regexes and call ``parse_action``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain import QuestionType, Quiz, QuizStatus
from bot.quiz.schema import MAX_ANSWER_CHARS
from bot.quiz.validate import QuizError
from bot.slack_text import escape_mrkdwn, storable_text

ACTION_CHOICE = "quiz_choice"  # value f"{quiz_id}:{question_index}:{choice_index}"
ACTION_OPEN_FREE = "quiz_free_open"  # value f"{quiz_id}:{question_index}"
ACTION_SUBMIT = "quiz_submit"  # value f"{quiz_id}"
VIEW_FREE_RESPONSE = "quiz_free_response"  # modal callback_id
FREE_INPUT_BLOCK = "answer"
FREE_INPUT_ACTION = "answer_input"

# Loose on purpose: a malformed id should still reach its handler, which acks and drops it
# (``parse_action`` raises), instead of going unmatched (Bolt answers 404, the user sees an error).
ACTION_CHOICE_PATTERN = re.compile(rf"^{ACTION_CHOICE}(?::|$)")
ACTION_OPEN_FREE_PATTERN = re.compile(rf"^{ACTION_OPEN_FREE}(?::|$)")
ACTION_SUBMIT_PATTERN = re.compile(rf"^{ACTION_SUBMIT}(?::|$)")

# Block Kit limits (PLATFORM-FACTS.md).
MAX_MESSAGE_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_CONTEXT_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_BUTTON_CHARS = 75
MAX_MODAL_TITLE_CHARS = 24
MAX_PRIVATE_METADATA_CHARS = 3000
# Notification text: far below Slack's 40,000, it only has to say what the message is.
MAX_FALLBACK_CHARS = 300

CHOSEN_MARK = "✓ "
NO_ANSWER = "—"

CLOSED_STATUS_TEXT: dict[QuizStatus, str] = {
    QuizStatus.SUBMITTED: "Submitted ✅",
    QuizStatus.SKIPPED: "Skipped — you moved on",
    QuizStatus.EXPIRED: "Sent as a new message (the quiz had expired)",
    QuizStatus.ANSWERED: "Waiting for the other quiz(zes)…",
}
CHECKING_TEXT = "Answers received — checking them…"

_ID = r"(0|[1-9][0-9]{0,17})"  # a non-negative integer that fits a bigint
_INDEX = r"(0|[1-9][0-9]{0,3})"
_ACTION_FORMATS: dict[str, tuple[re.Pattern[str], re.Pattern[str]]] = {
    # kind -> (action_id format, value format)
    ACTION_CHOICE: (
        re.compile(rf"{ACTION_CHOICE}:{_INDEX}:{_INDEX}"),
        re.compile(rf"{_ID}:{_INDEX}:{_INDEX}"),
    ),
    ACTION_OPEN_FREE: (
        re.compile(rf"{ACTION_OPEN_FREE}:{_INDEX}"),
        re.compile(rf"{_ID}:{_INDEX}"),
    ),
    ACTION_SUBMIT: (re.compile(ACTION_SUBMIT), re.compile(_ID)),
}


class QuizPayloadError(QuizError, ValueError):
    """An interaction payload (action id, value, modal state) is not one the bot produced."""


class QuizActionKind(enum.StrEnum):
    CHOICE = ACTION_CHOICE
    OPEN_FREE = ACTION_OPEN_FREE
    SUBMIT = ACTION_SUBMIT


@dataclass(frozen=True, slots=True)
class QuizAction:
    """A parsed quiz button click. Indices are range-checked by the caller against the quiz."""

    kind: QuizActionKind
    quiz_id: int
    question_index: int | None = None
    choice_index: int | None = None


def parse_action(action_id: str | None, value: str | None) -> QuizAction:
    """Parse a quiz button's ``action_id`` and ``value``; raise ``QuizPayloadError`` if malformed.

    The indices must agree between the two (both are set by ``quiz_message``).
    """
    if not isinstance(action_id, str) or not isinstance(value, str):
        raise QuizPayloadError("quiz action without an action_id or value")
    kind_name = action_id.split(":", 1)[0]
    if kind_name not in _ACTION_FORMATS:
        raise QuizPayloadError(f"not a quiz action: {action_id[:60]!r}")
    id_format, value_format = _ACTION_FORMATS[kind_name]
    id_match = id_format.fullmatch(action_id)
    value_match = value_format.fullmatch(value)
    if id_match is None or value_match is None:
        raise QuizPayloadError(f"malformed {kind_name} action: {action_id[:60]!r}={value[:60]!r}")
    indices = tuple(int(group) for group in id_match.groups())
    quiz_id, *value_indices = (int(group) for group in value_match.groups())
    if tuple(value_indices) != indices:
        raise QuizPayloadError(f"{kind_name}: action_id and value disagree")
    return QuizAction(
        kind=QuizActionKind(kind_name),
        quiz_id=quiz_id,
        question_index=indices[0] if len(indices) > 0 else None,
        choice_index=indices[1] if len(indices) > 1 else None,
    )


def parse_free_answer(view: Mapping[str, Any]) -> str | None:
    """The text typed in the free-response modal (``view_submission``'s ``view``), or None."""
    try:
        value = view["state"]["values"][FREE_INPUT_BLOCK][FREE_INPUT_ACTION].get("value")
    except (KeyError, TypeError, AttributeError):
        raise QuizPayloadError("free-response view without the answer input") from None
    if value is not None and not isinstance(value, str):
        raise QuizPayloadError("free-response answer is not text")
    return value if value is None else storable_text(value)


def quiz_message(quiz: Quiz) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks for an OPEN quiz: buttons to answer, a modal per free response."""
    blocks: list[dict[str, Any]] = [_header(quiz.title)]
    for index, question in enumerate(quiz.questions):
        answer = _answer(quiz, index)
        blocks.append(_section(f"*{index + 1}.* {escape_mrkdwn(question.text)}"))
        if question.type is QuestionType.MULTIPLE_CHOICE:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        _choice_button(quiz.id, index, choice_index, choice, answer == choice)
                        for choice_index, choice in enumerate(question.choices)
                    ],
                }
            )
        else:
            if answer is not None:
                blocks.append(_section(_quote(answer)))
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        _button(
                            "Edit answer" if answer is not None else "Answer",
                            action_id=f"{ACTION_OPEN_FREE}:{index}",
                            value=f"{quiz.id}:{index}",
                        )
                    ],
                }
            )
    answered = sum(answer is not None for answer in quiz.answers)
    blocks += [
        {"type": "divider"},
        _context(
            "Answer every question, then press *Submit*. "
            f"({answered} of {len(quiz.questions)} answered)"
        ),
        {
            "type": "actions",
            "elements": [
                _button("Submit", action_id=ACTION_SUBMIT, value=str(quiz.id), style="primary")
            ],
        },
    ]
    return _fallback(quiz), _within_budget(blocks)


def closed_quiz_message(
    quiz: Quiz, *, others_open: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and blocks for a quiz no longer taking clicks: the answers, no buttons.

    ``others_open``: an answered quiz whose run has other quizzes still waiting says so.
    """
    try:
        status_text = CLOSED_STATUS_TEXT[quiz.status]
    except KeyError:
        raise ValueError(f"quiz {quiz.id} is {quiz.status}, not closed") from None
    if quiz.status is QuizStatus.ANSWERED and not others_open:
        status_text = CHECKING_TEXT
    blocks: list[dict[str, Any]] = [_header(quiz.title)]
    for index, question in enumerate(quiz.questions):
        answer = _answer(quiz, index)
        blocks.append(_section(f"*{index + 1}.* {escape_mrkdwn(question.text)}"))
        blocks.append(_section(_quote(answer) if answer is not None else NO_ANSWER))
    blocks += [{"type": "divider"}, _context(status_text)]
    return f"{_fallback(quiz)} — {status_text}", _within_budget(blocks)


def free_response_modal(quiz: Quiz, question_index: int, private_metadata: str) -> dict[str, Any]:
    """The modal for one free-response question, prefilled with the current answer.

    Raises ``QuizPayloadError`` when ``question_index`` is not a free-response question of the
    quiz (it comes from a click), ``ValueError`` when ``private_metadata`` is too long.
    """
    if not 0 <= question_index < len(quiz.questions):
        raise QuizPayloadError(f"quiz {quiz.id} has no question {question_index}")
    question = quiz.questions[question_index]
    if question.type is not QuestionType.FREE_RESPONSE:
        raise QuizPayloadError(f"quiz {quiz.id} question {question_index} is not free response")
    if len(private_metadata) > MAX_PRIVATE_METADATA_CHARS:
        raise ValueError("private_metadata is longer than Slack's 3000 characters")
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": FREE_INPUT_ACTION,
        "multiline": True,
        "max_length": MAX_ANSWER_CHARS,
    }
    answer = _answer(quiz, question_index)
    if answer:
        element["initial_value"] = answer[:MAX_ANSWER_CHARS]
    return {
        "type": "modal",
        "callback_id": VIEW_FREE_RESPONSE,
        "title": _plain("Your answer", MAX_MODAL_TITLE_CHARS),
        "submit": _plain("Save", MAX_MODAL_TITLE_CHARS),
        "close": _plain("Cancel", MAX_MODAL_TITLE_CHARS),
        "private_metadata": private_metadata,
        "blocks": [
            _context(
                f"{escape_mrkdwn(quiz.title)} · question {question_index + 1} "
                f"of {len(quiz.questions)}"
            ),
            _section(escape_mrkdwn(question.text)),
            {
                "type": "input",
                "block_id": FREE_INPUT_BLOCK,
                "label": _plain("Your answer", 2000),
                "element": element,
            },
        ],
    }


def truncate(text: str, limit: int) -> str:
    """Cut already-escaped mrkdwn to at most ``limit`` characters, ending with "…" when cut.

    (``bot.rendering.truncate_escaped`` escapes its input itself; here the text is built
    around escaped parts — a numbered prefix, quote markers — and cut afterwards.)

    Never splits an entity made by ``escape_mrkdwn`` (after escaping, every "&" starts one).
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _answer(quiz: Quiz, index: int) -> str | None:
    return quiz.answers[index] if index < len(quiz.answers) else None


def _fallback(quiz: Quiz) -> str:
    count = len(quiz.questions)
    noun = "question" if count == 1 else "questions"
    return truncate(f"Quiz: {escape_mrkdwn(quiz.title)} ({count} {noun})", MAX_FALLBACK_CHARS)


def _quote(text: str) -> str:
    # Each line its own quote line; the text's own ">" is escaped, so it cannot end the quote.
    return truncate(
        "\n".join(f">{line}" for line in escape_mrkdwn(text).split("\n")), MAX_SECTION_CHARS
    )


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def _header(title: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(title, MAX_HEADER_CHARS)}


def _section(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(mrkdwn, MAX_SECTION_CHARS)},
    }


def _context(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn, MAX_CONTEXT_CHARS)}],
    }


def _button(text: str, *, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, MAX_BUTTON_CHARS),
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        button["style"] = style
    return button


def _choice_button(
    quiz_id: int, question_index: int, choice_index: int, choice: str, chosen: bool
) -> dict[str, Any]:
    return _button(
        f"{CHOSEN_MARK}{choice}" if chosen else choice,
        action_id=f"{ACTION_CHOICE}:{question_index}:{choice_index}",
        value=f"{quiz_id}:{question_index}:{choice_index}",
        style="primary" if chosen else None,
    )


def _within_budget(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Validation caps a quiz at 10 questions (at most 34 blocks), so this only guards a bug.
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        raise ValueError(f"quiz message needs {len(blocks)} blocks, Slack allows 50")
    return blocks
