"""The ``display_quiz`` function tool, as the model sees it.

The parameters are those of OpenAI's original Assistants notebook, so prompts written for it
keep working. The limits the bot enforces (see ``bot.quiz.validate``) are stated in the
description because the model reads that, not the validator.
"""

from __future__ import annotations

import copy
from typing import Any

DISPLAY_QUIZ_NAME = "display_quiz"

# The contract's limits, each derived from a Block Kit limit (PLATFORM-FACTS.md).
MAX_QUESTIONS = 10  # a quiz message must stay within 50 blocks
MAX_TITLE_CHARS = 150  # header block text
MAX_QUESTION_CHARS = 2900  # section text is 3000; room for the "*1.* " prefix
MIN_CHOICES = 2
MAX_CHOICES = 10
MAX_CHOICE_CHARS = 75  # button text
MAX_ANSWER_CHARS = 3000  # a free-response answer: plain_text_input max_length
DEFAULT_TITLE = "Quiz"

DISPLAY_QUIZ_DESCRIPTION = (
    "Displays a quiz to the student, and returns the student's response. "
    "A single quiz can have multiple questions. "
    "The result is a JSON list of answers in question order "
    "(for multiple choice, the text of the chosen choice). "
    f"Limits: 1-{MAX_QUESTIONS} questions; title at most {MAX_TITLE_CHARS} characters; "
    f"question_text at most {MAX_QUESTION_CHARS} characters; MULTIPLE_CHOICE questions need "
    f"{MIN_CHOICES}-{MAX_CHOICES} distinct choices of at most {MAX_CHOICE_CHARS} "
    "characters each."
)

DISPLAY_QUIZ_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "questions": {
            "type": "array",
            "description": (
                "An array of questions, each with a title and potentially options "
                "(if multiple choice)."
            ),
            "items": {
                "type": "object",
                "properties": {
                    "question_text": {"type": "string"},
                    "question_type": {
                        "type": "string",
                        "enum": ["MULTIPLE_CHOICE", "FREE_RESPONSE"],
                    },
                    "choices": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["question_text"],
            },
        },
    },
    "required": ["title", "questions"],
}


def responses_tool() -> dict[str, Any]:
    """The tool definition in the Responses API shape (flat ``name``/``parameters``)."""
    return {
        "type": "function",
        "name": DISPLAY_QUIZ_NAME,
        "description": DISPLAY_QUIZ_DESCRIPTION,
        # A copy: SDKs and callers may mutate what they are given.
        "parameters": copy.deepcopy(DISPLAY_QUIZ_PARAMETERS),
    }


def assistants_tool() -> dict[str, Any]:
    """The tool definition in the Assistants v2 / Chat Completions shape (nested ``function``)."""
    return {
        "type": "function",
        "function": {
            "name": DISPLAY_QUIZ_NAME,
            "description": DISPLAY_QUIZ_DESCRIPTION,
            "parameters": copy.deepcopy(DISPLAY_QUIZ_PARAMETERS),
        },
    }
