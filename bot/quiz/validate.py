"""Validate ``display_quiz`` arguments from the model into a ``QuizSpec``.

Bad arguments never crash the run: ``parse_quiz_arguments`` raises ``QuizValidationError``
listing every problem with its JSON path, and ``error_output`` turns it into the tool output
the model reads and can correct.

Policy, applied the same way to every field:
- whitespace is stripped (and collapsed to single spaces in the title and in choices, which
  are shown on one line);
- a missing/empty title becomes ``"Quiz"`` (nothing for the model to fix);
- a missing ``question_type`` is inferred: MULTIPLE_CHOICE when choices are given, else
  FREE_RESPONSE; a given type is matched case-insensitively ("multiple choice" works too);
- FREE_RESPONSE questions ignore ``choices`` entirely;
- text over a limit is *rejected*, never silently cut: the model can shorten it, while a
  truncated question or choice could change its meaning. (Block builders still truncate, as
  a second line of defence.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.domain import Question, QuestionType
from bot.quiz.schema import (
    DEFAULT_TITLE,
    DISPLAY_QUIZ_NAME,
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_QUESTION_CHARS,
    MAX_QUESTIONS,
    MAX_TITLE_CHARS,
    MIN_CHOICES,
)

# Enough to fix a typical mistake in one go, short enough for the model to read.
_MAX_REPORTED_PROBLEMS = 10
_RETRY = f"Call {DISPLAY_QUIZ_NAME} again with corrected arguments."
_TYPES = f'"{QuestionType.MULTIPLE_CHOICE}" or "{QuestionType.FREE_RESPONSE}"'

ERROR_HINT = (
    f"Fix the fields named in the error and call {DISPLAY_QUIZ_NAME} again. Rules: "
    f"arguments are a JSON object {{title, questions}}; 1-{MAX_QUESTIONS} questions "
    f"(use several {DISPLAY_QUIZ_NAME} calls for more); title at most {MAX_TITLE_CHARS} "
    f"characters; question_text required, at most {MAX_QUESTION_CHARS} characters; "
    f"question_type {_TYPES}; MULTIPLE_CHOICE needs {MIN_CHOICES}-{MAX_CHOICES} distinct, "
    f"non-empty string choices of at most {MAX_CHOICE_CHARS} characters."
)


class QuizError(Exception):
    """Base of the quiz errors that users or the model can cause."""


class QuizValidationError(QuizError):
    """The model's ``display_quiz`` arguments are unusable; the message says what to fix."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems: tuple[str, ...] = tuple(problems) or (message,)

    @classmethod
    def from_problems(cls, problems: Sequence[str]) -> QuizValidationError:
        shown = list(problems[:_MAX_REPORTED_PROBLEMS])
        if len(problems) > len(shown):
            shown.append(f"…and {len(problems) - len(shown)} more problems.")
        return cls(" ".join([*shown, _RETRY]), problems)


@dataclass(frozen=True)
class QuizSpec:
    """A validated ``display_quiz`` call: ready to store and render."""

    title: str
    questions: tuple[Question, ...]


def parse_quiz_arguments(arguments: str) -> QuizSpec:
    """Parse and validate the raw JSON ``arguments`` of a ``display_quiz`` call.

    Raises ``QuizValidationError`` naming every problem (``questions[2].choices: …``).
    """
    data = _decode(arguments)
    problems: list[str] = []
    title = _title(data.get("title"), problems)
    questions = _questions(data, problems)
    if problems:
        raise QuizValidationError.from_problems(problems)
    return QuizSpec(title=title, questions=tuple(questions))


def error_output(err: QuizValidationError) -> str:
    """The tool output (JSON text) for a call whose arguments failed validation."""
    return json.dumps({"error": str(err), "hint": ERROR_HINT}, ensure_ascii=False)


def _decode(arguments: str) -> dict[str, Any]:
    if not isinstance(arguments, str):
        raise QuizValidationError.from_problems(
            [f"arguments: expected JSON text, got {type(arguments).__name__}."]
        )
    try:
        data = json.loads(arguments)
        if isinstance(data, str):
            # Some models double-encode the arguments; unwrap one level.
            data = json.loads(data)
    except json.JSONDecodeError as exc:
        raise QuizValidationError.from_problems(
            [
                f"arguments: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}). "
                'Send one JSON object like {"title": "...", "questions": [...]}.'
            ]
        ) from None
    if not isinstance(data, dict):
        raise QuizValidationError.from_problems(
            [
                'arguments: expected a JSON object with "title" and "questions", '
                f"got {_json_type(data)}."
            ]
        )
    return data


def _title(value: Any, problems: list[str]) -> str:
    if value is None:
        return DEFAULT_TITLE
    if not isinstance(value, str):
        problems.append(f"title: expected a string, got {_json_type(value)}.")
        return DEFAULT_TITLE
    title = _one_line(value)
    if not title:
        return DEFAULT_TITLE
    if len(title) > MAX_TITLE_CHARS:
        problems.append(_too_long("title", MAX_TITLE_CHARS, len(title)))
    return title


def _questions(data: dict[str, Any], problems: list[str]) -> list[Question]:
    if "questions" not in data or data["questions"] is None:
        problems.append(
            f"questions: required; give an array of 1-{MAX_QUESTIONS} question objects."
        )
        return []
    items = data["questions"]
    if not isinstance(items, list):
        problems.append(
            f"questions: expected an array of question objects, got {_json_type(items)}."
        )
        return []
    if not items:
        problems.append("questions: give at least 1 question, got 0.")
        return []
    if len(items) > MAX_QUESTIONS:
        problems.append(
            f"questions: at most {MAX_QUESTIONS} questions per quiz, got {len(items)}. "
            f"Drop some, or split them over several {DISPLAY_QUIZ_NAME} calls."
        )
    questions = []
    for index, item in enumerate(items):
        question = _question(f"questions[{index}]", item, problems)
        if question is not None:
            questions.append(question)
    return questions


def _question(path: str, item: Any, problems: list[str]) -> Question | None:
    if not isinstance(item, dict):
        problems.append(
            f"{path}: expected an object with question_text, question_type and choices, "
            f"got {_json_type(item)}."
        )
        return None
    before = len(problems)
    text = _question_text(f"{path}.question_text", item.get("question_text"), problems)
    choices_value = item.get("choices")
    qtype = _question_type(
        f"{path}.question_type", item.get("question_type"), choices_value, problems
    )
    if qtype is None:
        return None
    choices: tuple[str, ...] = ()
    if qtype is QuestionType.MULTIPLE_CHOICE:
        choices = _choices(f"{path}.choices", choices_value, problems)
    if len(problems) > before:
        return None
    return Question(text=text, type=qtype, choices=choices)


def _question_text(path: str, value: Any, problems: list[str]) -> str:
    if value is None:
        problems.append(f"{path}: required, a non-empty string.")
        return ""
    if not isinstance(value, str):
        problems.append(f"{path}: expected a string, got {_json_type(value)}.")
        return ""
    text = value.strip()
    if not text:
        problems.append(f"{path}: must not be empty.")
    elif len(text) > MAX_QUESTION_CHARS:
        problems.append(_too_long(path, MAX_QUESTION_CHARS, len(text)))
    return text


def _question_type(path: str, value: Any, choices: Any, problems: list[str]) -> QuestionType | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        given = choices is not None and not (isinstance(choices, list | str) and not choices)
        return QuestionType.MULTIPLE_CHOICE if given else QuestionType.FREE_RESPONSE
    if isinstance(value, str):
        normalized = "_".join(value.replace("-", " ").upper().split())
        if normalized in QuestionType.__members__:
            return QuestionType[normalized]
        problems.append(f"{path}: expected {_TYPES}, got {_preview(value)}.")
    else:
        problems.append(f"{path}: expected {_TYPES}, got {_json_type(value)}.")
    return None


def _choices(path: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    need = f"MULTIPLE_CHOICE questions need {MIN_CHOICES}-{MAX_CHOICES} choices"
    if value is None:
        problems.append(f"{path}: {need}, got none.")
        return ()
    if not isinstance(value, list):
        problems.append(f"{path}: expected an array of strings, got {_json_type(value)}.")
        return ()
    if not MIN_CHOICES <= len(value) <= MAX_CHOICES:
        problems.append(f"{path}: {need}, got {len(value)}.")
    choices: list[str] = []
    first_seen: dict[str, int] = {}
    for index, raw in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(raw, str):
            problems.append(f"{item_path}: expected a string, got {_json_type(raw)}.")
            continue
        choice = _one_line(raw)
        if not choice:
            problems.append(f"{item_path}: must not be empty.")
        elif len(choice) > MAX_CHOICE_CHARS:
            problems.append(_too_long(item_path, MAX_CHOICE_CHARS, len(choice)))
        elif choice in first_seen:
            problems.append(
                f"{item_path}: duplicates {path}[{first_seen[choice]}] ({_preview(choice)}); "
                "choices must be distinct."
            )
        else:
            first_seen[choice] = index
        choices.append(choice)
    return tuple(choices)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _too_long(path: str, limit: int, length: int) -> str:
    return f"{path}: at most {limit} characters, got {length}. Shorten it."


def _preview(value: str, limit: int = 40) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return json.dumps(shown, ensure_ascii=False)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
