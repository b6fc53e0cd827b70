"""A quiz message as numbered prompts, and what the student types at them: pure functions.

The console reads the quiz from the very blocks Slack would show (``bot.quiz.blocks``): the
buttons' ids name the quiz, the question and the choice, so answering goes through the same
``QuizFlow`` calls a click does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.console.render import plain_mrkdwn
from bot.quiz.blocks import CHOSEN_MARK, QuizActionKind, QuizPayloadError, parse_action

SKIP = "/skip"
LEAVE = ("exit", "quit")
_NUMBERED = re.compile(r"^\*(\d+)\.\* (.*)$", re.DOTALL)
_CHOICE_NUMBER = re.compile(r"^\(?(\d{1,4})[.)]?$")


@dataclass(frozen=True, slots=True)
class QuizQuestion:
    index: int  # 0-based, as the quiz's actions carry it
    text: str
    choices: tuple[str, ...] = ()  # none: a free-response question

    @property
    def free_response(self) -> bool:
        return not self.choices


@dataclass(frozen=True, slots=True)
class QuizPrompt:
    quiz_id: int
    title: str
    questions: tuple[QuizQuestion, ...]


def read_quiz(blocks: Sequence[Mapping[str, Any]]) -> QuizPrompt | None:
    """The quiz in an open quiz message's blocks; None if they are not one."""
    title = ""
    texts: dict[int, str] = {}
    choices: dict[int, dict[int, str]] = {}
    free: set[int] = set()
    quiz_id: int | None = None
    for block in blocks:
        kind = block.get("type")
        if kind == "header" and not title:
            title = str((block.get("text") or {}).get("text") or "")
        elif kind == "section":
            numbered = _NUMBERED.match(str((block.get("text") or {}).get("text") or ""))
            if numbered:
                texts[int(numbered[1]) - 1] = plain_mrkdwn(numbered[2])
        elif kind == "actions":
            for element in block.get("elements") or []:
                try:
                    action = parse_action(element.get("action_id"), element.get("value"))
                except QuizPayloadError:
                    continue
                quiz_id = action.quiz_id
                question = action.question_index
                if action.kind is QuizActionKind.CHOICE and question is not None:
                    choice = action.choice_index or 0
                    choices.setdefault(question, {})[choice] = _choice_label(element)
                elif action.kind is QuizActionKind.OPEN_FREE and question is not None:
                    free.add(question)
    if quiz_id is None:
        return None
    questions = []
    for index in sorted(set(choices) | free):
        options = choices.get(index, {})
        questions.append(
            QuizQuestion(
                index=index,
                text=texts.get(index, f"Question {index + 1}"),
                choices=tuple(options[c] for c in sorted(options)),
            )
        )
    return QuizPrompt(quiz_id=quiz_id, title=title or "Quiz", questions=tuple(questions))


def _choice_label(button: Mapping[str, Any]) -> str:
    label = str((button.get("text") or {}).get("text") or "")
    # The chosen button is marked (and styled): the mark is not part of the choice.
    if button.get("style") == "primary" and label.startswith(CHOSEN_MARK):
        label = label[len(CHOSEN_MARK) :]
    return label


class Typed(enum.Enum):
    CHOICE = "choice"  # ``choice`` holds the 0-based choice
    ANSWER = "answer"  # ``text`` is a free-response answer
    AGAIN = "again"  # not an answer: ask again
    SKIP = "skip"  # leave the quiz open, back to the chat
    MESSAGE = "message"  # a message instead of an answer: it skips the quiz, as in Slack
    LEAVE = "leave"  # leave the console


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Typed
    choice: int | None = None
    text: str = ""


def parse_choice(line: str, count: int) -> Entry:
    """A line typed at a multiple-choice question with ``count`` choices.

    A choice's number ("2", " 2 ", "2)", "(2)") picks it; a sentence is a message to the
    tutor instead (it skips the quiz); anything else (a number out of range, "x") asks again.
    """
    stripped = line.strip()
    command = _command(stripped)
    if command is not None:
        return command
    number = _CHOICE_NUMBER.match(stripped)
    if number:
        value = int(number[1])
        return Entry(Typed.CHOICE, choice=value - 1) if 1 <= value <= count else Entry(Typed.AGAIN)
    if len(stripped.split()) > 1:
        return Entry(Typed.MESSAGE, text=stripped)
    return Entry(Typed.AGAIN)


def parse_free(line: str) -> Entry:
    """A line typed at a free-response question: the answer, unless a command or empty."""
    stripped = line.strip()
    command = _command(stripped)
    if command is not None:
        return command
    return Entry(Typed.ANSWER, text=stripped) if stripped else Entry(Typed.AGAIN)


def _command(stripped: str) -> Entry | None:
    if stripped.lower() == SKIP:
        return Entry(Typed.SKIP)
    if stripped.lower() in LEAVE:
        return Entry(Typed.LEAVE)
    return None
