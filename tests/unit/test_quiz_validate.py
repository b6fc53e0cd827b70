"""display_quiz tool schema and argument validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.domain import Question, QuestionType
from bot.quiz.schema import (
    DISPLAY_QUIZ_DESCRIPTION,
    DISPLAY_QUIZ_NAME,
    DISPLAY_QUIZ_PARAMETERS,
    assistants_tool,
    responses_tool,
)
from bot.quiz.validate import (
    QuizSpec,
    QuizValidationError,
    error_output,
    parse_quiz_arguments,
)

MC = QuestionType.MULTIPLE_CHOICE
FREE = QuestionType.FREE_RESPONSE
RETRY = "Call display_quiz again with corrected arguments."


def mc(text: str = "2+2?", choices: Any = ("3", "4"), **extra: Any) -> dict[str, Any]:
    return {
        "question_text": text,
        "question_type": "MULTIPLE_CHOICE",
        "choices": list(choices) if isinstance(choices, tuple) else choices,
        **extra,
    }


def free(text: Any = "Explain why.", **extra: Any) -> dict[str, Any]:
    return {"question_text": text, "question_type": "FREE_RESPONSE", **extra}


def args(*questions: Any, title: Any = "Arithmetic") -> str:
    return json.dumps({"title": title, "questions": list(questions)})


# -- schema ------------------------------------------------------------------------------


def test_parameters_match_the_notebook() -> None:
    params = DISPLAY_QUIZ_PARAMETERS
    assert params["type"] == "object"
    assert params["required"] == ["title", "questions"]
    assert params["properties"]["title"] == {"type": "string"}
    items = params["properties"]["questions"]["items"]
    assert items["required"] == ["question_text"]
    assert items["properties"]["question_text"] == {"type": "string"}
    assert items["properties"]["question_type"] == {
        "type": "string",
        "enum": ["MULTIPLE_CHOICE", "FREE_RESPONSE"],
    }
    assert items["properties"]["choices"] == {"type": "array", "items": {"type": "string"}}


def test_responses_tool_shape() -> None:
    tool = responses_tool()
    assert tool == {
        "type": "function",
        "name": DISPLAY_QUIZ_NAME,
        "description": DISPLAY_QUIZ_DESCRIPTION,
        "parameters": DISPLAY_QUIZ_PARAMETERS,
    }
    assert DISPLAY_QUIZ_NAME == "display_quiz"


def test_assistants_tool_shape() -> None:
    assert assistants_tool() == {
        "type": "function",
        "function": {
            "name": DISPLAY_QUIZ_NAME,
            "description": DISPLAY_QUIZ_DESCRIPTION,
            "parameters": DISPLAY_QUIZ_PARAMETERS,
        },
    }


def test_tools_are_copies() -> None:
    responses_tool()["parameters"]["properties"].clear()
    assistants_tool()["function"]["parameters"]["required"].clear()
    assert set(DISPLAY_QUIZ_PARAMETERS["properties"]) == {"title", "questions"}
    assert DISPLAY_QUIZ_PARAMETERS["required"] == ["title", "questions"]


def test_tools_are_json_serializable() -> None:
    json.dumps(responses_tool())
    json.dumps(assistants_tool())


# -- valid arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            args(mc()),
            QuizSpec("Arithmetic", (Question("2+2?", MC, ("3", "4")),)),
            id="multiple-choice",
        ),
        pytest.param(
            args(free()),
            QuizSpec("Arithmetic", (Question("Explain why.", FREE),)),
            id="free-response",
        ),
        pytest.param(
            json.dumps({"questions": [free()]}),
            QuizSpec("Quiz", (Question("Explain why.", FREE),)),
            id="missing-title-defaults",
        ),
        pytest.param(
            args(free(), title=None),
            QuizSpec("Quiz", (Question("Explain why.", FREE),)),
            id="null-title-defaults",
        ),
        pytest.param(
            args(free(), title="  \n "),
            QuizSpec("Quiz", (Question("Explain why.", FREE),)),
            id="blank-title-defaults",
        ),
        pytest.param(
            args(mc("  2+2?\n", ["  3 ", "\t4\n"]), title="  Arith\n  metic  "),
            QuizSpec("Arith metic", (Question("2+2?", MC, ("3", "4")),)),
            id="whitespace-stripped-and-collapsed",
        ),
        pytest.param(
            args(mc("Line one\nline two")),
            QuizSpec("Arithmetic", (Question("Line one\nline two", MC, ("3", "4")),)),
            id="question-newlines-kept",
        ),
        pytest.param(
            args(mc(question_type="multiple_choice")),
            QuizSpec("Arithmetic", (Question("2+2?", MC, ("3", "4")),)),
            id="type-lowercase",
        ),
        pytest.param(
            args(mc(question_type=" Multiple choice ")),
            QuizSpec("Arithmetic", (Question("2+2?", MC, ("3", "4")),)),
            id="type-with-space",
        ),
        pytest.param(
            args(free(question_type="free-response")),
            QuizSpec("Arithmetic", (Question("Explain why.", FREE),)),
            id="type-with-hyphen",
        ),
        pytest.param(
            args({"question_text": "Pick", "choices": ["a", "b"]}),
            QuizSpec("Arithmetic", (Question("Pick", MC, ("a", "b")),)),
            id="missing-type-with-choices-is-mc",
        ),
        pytest.param(
            args({"question_text": "Why?"}),
            QuizSpec("Arithmetic", (Question("Why?", FREE),)),
            id="missing-type-without-choices-is-free",
        ),
        pytest.param(
            args({"question_text": "Why?", "choices": []}),
            QuizSpec("Arithmetic", (Question("Why?", FREE),)),
            id="missing-type-empty-choices-is-free",
        ),
        pytest.param(
            args({"question_text": "Why?", "question_type": None, "choices": None}),
            QuizSpec("Arithmetic", (Question("Why?", FREE),)),
            id="null-type-null-choices-is-free",
        ),
        pytest.param(
            args(free(choices=["a"])),
            QuizSpec("Arithmetic", (Question("Explain why.", FREE),)),
            id="free-ignores-choices",
        ),
        pytest.param(
            args(free(choices="not a list")),
            QuizSpec("Arithmetic", (Question("Explain why.", FREE),)),
            id="free-ignores-malformed-choices",
        ),
        pytest.param(
            args(mc(extra_field=1)),
            QuizSpec("Arithmetic", (Question("2+2?", MC, ("3", "4")),)),
            id="unknown-keys-ignored",
        ),
        pytest.param(
            json.dumps(args(free())),
            QuizSpec("Arithmetic", (Question("Explain why.", FREE),)),
            id="double-encoded-json",
        ),
        pytest.param(
            args(mc("x", ["4", "Four", "four"])),
            QuizSpec("Arithmetic", (Question("x", MC, ("4", "Four", "four")),)),
            id="case-differences-are-distinct",
        ),
    ],
)
def test_valid_arguments(arguments: str, expected: QuizSpec) -> None:
    assert parse_quiz_arguments(arguments) == expected


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(args(*[free(f"q{i}") for i in range(10)]), id="10-questions"),
        pytest.param(args(mc(choices=[str(i) for i in range(10)])), id="10-choices"),
        pytest.param(args(mc(choices=["a" * 75, "b"])), id="75-char-choice"),
        pytest.param(args(free(), title="t" * 150), id="150-char-title"),
        pytest.param(args(free("q" * 2900)), id="2900-char-question"),
        pytest.param(args(mc(choices=["a", "b"])), id="2-choices"),
    ],
)
def test_limits_are_inclusive(arguments: str) -> None:
    parse_quiz_arguments(arguments)


def test_spec_is_immutable() -> None:
    spec = parse_quiz_arguments(args(mc(), free()))
    assert isinstance(spec.questions, tuple)
    assert [q.type for q in spec.questions] == [MC, FREE]
    with pytest.raises(AttributeError):
        spec.title = "x"  # type: ignore[misc]


# -- invalid arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param("not json", "arguments: not valid JSON", id="bad-json"),
        pytest.param("", "arguments: not valid JSON", id="empty-string"),
        pytest.param('{"title": "x", "questions": [', "arguments: not valid JSON", id="cut-off"),
        pytest.param("[]", "arguments: expected a JSON object", id="array"),
        pytest.param(json.dumps([free()]), "got array", id="array-of-questions"),
        pytest.param("42", "got number", id="number"),
        pytest.param("null", "got null", id="null"),
        pytest.param('"hello"', "arguments: not valid JSON", id="string-not-json-inside"),
        pytest.param(
            json.dumps({"title": "x"}), "questions: required; give an array of 1-10", id="no-qs"
        ),
        pytest.param(
            json.dumps({"title": "x", "questions": None}), "questions: required", id="null-qs"
        ),
        pytest.param(
            json.dumps({"title": "x", "questions": {"question_text": "a"}}),
            "questions: expected an array of question objects, got object",
            id="questions-object",
        ),
        pytest.param(args(), "questions: give at least 1 question, got 0", id="empty-questions"),
        pytest.param(
            args(*[free(f"q{i}") for i in range(11)]),
            "questions: at most 10 questions per quiz, got 11",
            id="11-questions",
        ),
        pytest.param(
            args("What is 2+2?"),
            "questions[0]: expected an object with question_text, question_type and choices, "
            "got string",
            id="question-string",
        ),
        pytest.param(
            args({"question_type": "FREE_RESPONSE"}),
            "questions[0].question_text: required, a non-empty string",
            id="no-question-text",
        ),
        pytest.param(
            args(free(5)), "questions[0].question_text: expected a string, got number", id="qt-num"
        ),
        pytest.param(
            args(free(), free(" \n ")),
            "questions[1].question_text: must not be empty",
            id="blank-question-text",
        ),
        pytest.param(
            args(free("q" * 2901)),
            "questions[0].question_text: at most 2900 characters, got 2901. Shorten it.",
            id="2901-char-question",
        ),
        pytest.param(
            args(mc(question_type="TRUE_FALSE")),
            'questions[0].question_type: expected "MULTIPLE_CHOICE" or "FREE_RESPONSE", '
            'got "TRUE_FALSE"',
            id="unknown-type",
        ),
        pytest.param(
            args(mc(question_type=1)),
            "questions[0].question_type: expected",
            id="type-number",
        ),
        pytest.param(
            args(mc(question_type=["MULTIPLE_CHOICE"])),
            "got array",
            id="type-array",
        ),
        pytest.param(
            args({"question_text": "x", "question_type": "MULTIPLE_CHOICE"}),
            "questions[0].choices: MULTIPLE_CHOICE questions need 2-10 choices, got none",
            id="mc-without-choices",
        ),
        pytest.param(
            args(mc(choices=[])),
            "questions[0].choices: MULTIPLE_CHOICE questions need 2-10 choices, got 0",
            id="mc-empty-choices",
        ),
        pytest.param(
            args(free(), free(), mc(choices=["only"])),
            "questions[2].choices: MULTIPLE_CHOICE questions need 2-10 choices, got 1. " + RETRY,
            id="1-choice",
        ),
        pytest.param(
            args(mc(choices=[str(i) for i in range(11)])),
            "questions[0].choices: MULTIPLE_CHOICE questions need 2-10 choices, got 11",
            id="11-choices",
        ),
        pytest.param(
            args(mc(choices="a, b")),
            "questions[0].choices: expected an array of strings, got string",
            id="choices-string",
        ),
        pytest.param(
            args({"question_text": "x", "choices": "a, b"}),
            "questions[0].choices: expected an array of strings, got string",
            id="choices-string-no-type",
        ),
        pytest.param(
            args(mc(choices=["a", "b" * 76])),
            "questions[0].choices[1]: at most 75 characters, got 76. Shorten it.",
            id="76-char-choice",
        ),
        pytest.param(
            args(free(), title="t" * 151),
            "title: at most 150 characters, got 151. Shorten it.",
            id="151-char-title",
        ),
        pytest.param(args(free(), title=7), "title: expected a string, got number", id="title-num"),
        pytest.param(
            args(mc(choices=["4", "5", "4"])),
            'questions[0].choices[2]: duplicates questions[0].choices[0] ("4"); '
            "choices must be distinct",
            id="duplicate-choices",
        ),
        pytest.param(
            args(mc(choices=["4", " 4\n"])),
            "questions[0].choices[1]: duplicates questions[0].choices[0]",
            id="duplicate-after-strip",
        ),
        pytest.param(
            args(mc(choices=[1, 2])),
            "questions[0].choices[0]: expected a string, got number. "
            "questions[0].choices[1]: expected a string, got number.",
            id="non-string-choices",
        ),
        pytest.param(
            args(mc(choices=["a", None])),
            "questions[0].choices[1]: expected a string, got null",
            id="null-choice",
        ),
        pytest.param(
            args(mc(choices=["a", {"text": "b"}])),
            "questions[0].choices[1]: expected a string, got object",
            id="object-choice",
        ),
        pytest.param(
            args(mc(choices=["a", True])),
            "questions[0].choices[1]: expected a string, got boolean",
            id="bool-choice",
        ),
        pytest.param(
            args(mc(choices=["a", "  "])),
            "questions[0].choices[1]: must not be empty",
            id="blank-choice",
        ),
    ],
)
def test_invalid_arguments(arguments: str, expected: str) -> None:
    with pytest.raises(QuizValidationError) as info:
        parse_quiz_arguments(arguments)
    message = str(info.value)
    assert expected in message
    assert message.endswith(RETRY)
    assert info.value.problems


def test_every_problem_is_reported_at_once() -> None:
    arguments = args(
        mc(choices=["only"]),
        free(""),
        mc(question_type="ESSAY"),
        title="t" * 151,
    )
    with pytest.raises(QuizValidationError) as info:
        parse_quiz_arguments(arguments)
    assert [p.split(":")[0] for p in info.value.problems] == [
        "title",
        "questions[0].choices",
        "questions[1].question_text",
        "questions[2].question_type",
    ]


def test_many_problems_are_capped() -> None:
    arguments = args(*[{"question_text": i} for i in range(11)])
    with pytest.raises(QuizValidationError) as info:
        parse_quiz_arguments(arguments)
    assert len(info.value.problems) == 12  # the count, then one per question
    message = str(info.value)
    assert "…and 2 more problems." in message
    assert "questions[8]" in message and "questions[9]" not in message


def test_long_values_are_not_echoed() -> None:
    with pytest.raises(QuizValidationError) as info:
        parse_quiz_arguments(args(mc(question_type="X" * 500)))
    assert len(str(info.value)) < 300


def test_non_string_arguments() -> None:
    with pytest.raises(QuizValidationError, match="expected JSON text"):
        parse_quiz_arguments(None)  # type: ignore[arg-type]


# -- error output ------------------------------------------------------------------------


def test_error_output_is_json_the_model_can_act_on() -> None:
    with pytest.raises(QuizValidationError) as info:
        parse_quiz_arguments(args(mc(choices=["a"])))
    output = json.loads(error_output(info.value))
    assert set(output) == {"error", "hint"}
    assert output["error"] == str(info.value)
    assert "questions[0].choices" in output["error"]
    assert "display_quiz" in output["hint"]
    assert "2-10" in output["hint"]


def test_error_output_keeps_unicode_readable() -> None:
    err = QuizValidationError('questions[0].choices[1]: duplicates ("½").')
    assert "½" in error_output(err)
    assert err.problems == (err.message,)
