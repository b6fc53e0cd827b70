"""Quiz Block Kit builders and interaction payload parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.domain import Question, QuestionType, Quiz, QuizStatus
from bot.quiz.blocks import (
    ACTION_CHOICE,
    ACTION_CHOICE_PATTERN,
    ACTION_OPEN_FREE,
    ACTION_OPEN_FREE_PATTERN,
    ACTION_SUBMIT,
    ACTION_SUBMIT_PATTERN,
    FREE_INPUT_ACTION,
    FREE_INPUT_BLOCK,
    VIEW_FREE_RESPONSE,
    QuizAction,
    QuizActionKind,
    QuizPayloadError,
    closed_quiz_message,
    escape_mrkdwn,
    free_response_modal,
    parse_action,
    parse_free_answer,
    quiz_message,
    truncate,
)
from bot.quiz.validate import parse_quiz_arguments

MC = QuestionType.MULTIPLE_CHOICE
FREE = QuestionType.FREE_RESPONSE
EVIL = "<!channel> <@U123> & <https://evil.example|click> *bold*"


def make_quiz(
    questions: Sequence[Question],
    answers: Sequence[str | None] | None = None,
    *,
    title: str = "Fractions",
    status: QuizStatus = QuizStatus.OPEN,
    quiz_id: int = 42,
) -> Quiz:
    return Quiz(
        id=quiz_id,
        turn_id=1,
        thread_id=1,
        call_id="call_1",
        title=title,
        questions=list(questions),
        answers=list(answers) if answers is not None else [None] * len(questions),
        status=status,
        channel="C1",
    )


def mc(text: str = "1/2 + 1/4?", choices: Sequence[str] = ("3/4", "2/6", "1")) -> Question:
    return Question(text, MC, tuple(choices))


def free(text: str = "Why?") -> Question:
    return Question(text, FREE)


# -- limit checking ----------------------------------------------------------------------

TEXT_LIMITS = {"header": 150, "section": 3000, "context": 3000}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def assert_valid_blocks(blocks: list[dict[str, Any]], max_blocks: int = 50) -> None:
    """Slack's own models accept the blocks unchanged, and every limit holds."""
    assert 1 <= len(blocks) <= max_blocks
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        assert parsed.to_dict() == block  # validates; nothing unknown dropped
        if block["type"] in ("header", "section"):
            assert len(block["text"]["text"]) <= TEXT_LIMITS[block["type"]]
        if block["type"] == "context":
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
        if block["type"] == "actions":
            assert 1 <= len(block["elements"]) <= 25
    action_ids = []
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    for node in walk(blocks):
        if node.get("type") == "button":
            assert len(node["text"]["text"]) <= 75
            assert len(node["value"]) <= 2000
            assert len(node["action_id"]) <= 255
            action_ids.append(node["action_id"])
        if "block_id" in node:
            assert len(node["block_id"]) <= 255
    assert len(action_ids) == len(set(action_ids)), "action_id must be unique in a message"
    assert len(block_ids) == len(set(block_ids))


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [node for node in walk(blocks) if node.get("type") == "button"]


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [node["text"] for node in walk(blocks) if node.get("type") == "mrkdwn"]


# The biggest quizzes validation lets through, with everything answered and escaping at its
# worst ("<" grows to "&lt;").
BIG = "<" * 2900
LONG_CHOICE = "c" * 75
BIGGEST_MC = make_quiz(
    [mc(BIG, [f"{i}{LONG_CHOICE}"[:75] for i in range(10)]) for _ in range(10)],
    answers=[f"{i}{LONG_CHOICE}"[:75] for i in range(10)],
    title="T" * 150,
)
BIGGEST_FREE = make_quiz([free(BIG) for _ in range(10)], answers=["<\n" * 1500] * 10)
QUIZZES = {
    "one-mc": make_quiz([mc()]),
    "one-free": make_quiz([free()]),
    "mixed-answered": make_quiz([mc(), free(), mc()], ["3/4", "Because.", None]),
    "biggest-mc": BIGGEST_MC,
    "biggest-free": BIGGEST_FREE,
    "biggest-free-unanswered": make_quiz([free(BIG) for _ in range(10)]),
    "evil": make_quiz([mc(EVIL, [EVIL[:75], "b"]), free(EVIL)], [EVIL[:75], EVIL], title=EVIL),
    "emoji": make_quiz([mc("🎲 odds?", ["🎲" * 75, "½"])], ["🎲" * 75], title="🎲" * 150),
}


# -- quiz_message ------------------------------------------------------------------------


@pytest.mark.parametrize("quiz", QUIZZES.values(), ids=QUIZZES.keys())
def test_quiz_message_within_limits(quiz: Quiz) -> None:
    text, blocks = quiz_message(quiz)
    assert text and len(text) <= 300
    assert_valid_blocks(blocks)


@pytest.mark.parametrize(
    "status",
    [QuizStatus.SUBMITTED, QuizStatus.SKIPPED, QuizStatus.EXPIRED, QuizStatus.ANSWERED],
)
@pytest.mark.parametrize("quiz", QUIZZES.values(), ids=QUIZZES.keys())
def test_closed_quiz_message_within_limits(quiz: Quiz, status: QuizStatus) -> None:
    quiz = make_quiz(quiz.questions, quiz.answers, title=quiz.title, status=status)
    text, blocks = closed_quiz_message(quiz)
    assert text
    assert_valid_blocks(blocks)


def test_quiz_message_layout() -> None:
    quiz = make_quiz([mc(), free()], ["2/6", None])
    text, blocks = quiz_message(quiz)
    assert text == "Quiz: Fractions (2 questions)"
    assert [b["type"] for b in blocks] == [
        "header",
        "section",
        "actions",
        "section",
        "actions",
        "divider",
        "context",
        "actions",
    ]
    assert blocks[0]["text"]["text"] == "Fractions"
    assert blocks[1]["text"]["text"] == "*1.* 1/2 + 1/4?"
    assert blocks[3]["text"]["text"] == "*2.* Why?"
    context = blocks[6]["elements"][0]["text"]
    assert "Answer every question, then press *Submit*" in context
    assert "(1 of 2 answered)" in context
    submit = blocks[7]["elements"]
    assert submit == [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Submit", "emoji": True},
            "action_id": ACTION_SUBMIT,
            "value": "42",
            "style": "primary",
        }
    ]


def test_chosen_choice_is_marked() -> None:
    _, blocks = quiz_message(make_quiz([mc()], ["2/6"]))
    choice_buttons = blocks[2]["elements"]
    assert [b["text"]["text"] for b in choice_buttons] == ["3/4", "✓ 2/6", "1"]
    assert [b.get("style") for b in choice_buttons] == [None, "primary", None]
    assert [b["action_id"] for b in choice_buttons] == [
        "quiz_choice:0:0",
        "quiz_choice:0:1",
        "quiz_choice:0:2",
    ]
    assert [b["value"] for b in choice_buttons] == ["42:0:0", "42:0:1", "42:0:2"]


def test_no_choice_marked_when_unanswered() -> None:
    _, blocks = quiz_message(make_quiz([mc()]))
    assert all("style" not in b for b in blocks[2]["elements"])
    assert not any(b["text"]["text"].startswith("✓") for b in blocks[2]["elements"])


def test_marked_75_char_choice_is_cut_to_fit() -> None:
    choice = "x" * 75
    _, blocks = quiz_message(make_quiz([mc(choices=[choice, "y"])], [choice]))
    text = blocks[2]["elements"][0]["text"]["text"]
    assert len(text) == 75
    assert text.startswith("✓ xxx") and text.endswith("…")


@pytest.mark.parametrize(
    ("answer", "button", "quote"),
    [
        (None, "Answer", None),
        ("Because.", "Edit answer", ">Because."),
        ("one\ntwo", "Edit answer", ">one\n>two"),
        ("> not a quote <@U1>", "Edit answer", ">&gt; not a quote &lt;@U1&gt;"),
    ],
)
def test_free_response_answer_and_button(answer: str | None, button: str, quote: str) -> None:
    _, blocks = quiz_message(make_quiz([free()], [answer]))
    types = [b["type"] for b in blocks[:4]]
    if quote is None:
        assert types[:3] == ["header", "section", "actions"]
        actions = blocks[2]
    else:
        assert types == ["header", "section", "section", "actions"]
        assert blocks[2]["text"]["text"] == quote
        actions = blocks[3]
    (open_button,) = actions["elements"]
    assert open_button["text"]["text"] == button
    assert open_button["action_id"] == "quiz_free_open:0"
    assert open_button["value"] == "42:0"


def test_model_text_is_escaped_in_mrkdwn() -> None:
    quiz = make_quiz([mc(EVIL, ["<@U1>", "b"]), free(EVIL)], [None, EVIL], title=EVIL)
    text, blocks = quiz_message(quiz)
    for mrkdwn in [text, *mrkdwn_texts(blocks)]:
        unquoted = re.sub(r"(?m)^>", "", mrkdwn)  # our own quote markers
        assert "<" not in unquoted and ">" not in unquoted
    assert (
        "*1.* &lt;!channel&gt; &lt;@U123&gt; &amp; &lt;https://evil.example|click&gt; *bold*"
        in (mrkdwn_texts(blocks))
    )
    # Plain text is not parsed by Slack: shown as typed, not double-escaped.
    assert blocks[0]["text"]["text"] == EVIL
    assert blocks[2]["elements"][0]["text"]["text"] == "<@U1>"


def test_escaped_text_is_truncated_without_splitting_entities() -> None:
    quiz = make_quiz([free("a" + "<" * 2899)])
    _, blocks = quiz_message(quiz)
    section = blocks[1]["text"]["text"]
    assert len(section) <= 3000
    assert section.endswith("&lt;…")


@pytest.mark.parametrize("questions", [1, 5, 10])
def test_every_valid_spec_renders(questions: int) -> None:
    arguments = json.dumps(
        {
            "title": "<b>" * 50,
            "questions": [
                {"question_text": "&" * 2900, "choices": [f"{c}{'>' * 73}" for c in range(10)]}
                if i % 2
                else {"question_text": "<" * 2900}
                for i in range(questions)
            ],
        }
    )
    spec = parse_quiz_arguments(arguments)
    quiz = make_quiz(spec.questions, title=spec.title)
    assert_valid_blocks(quiz_message(quiz)[1])


# -- closed_quiz_message -----------------------------------------------------------------


def test_an_answered_quiz_waits_only_when_its_run_has_other_open_quizzes() -> None:
    quiz = make_quiz([mc()], ["3/4"], status=QuizStatus.ANSWERED)
    assert closed_quiz_message(quiz, others_open=True)[0].endswith(
        "Waiting for the other quiz(zes)…"
    )
    assert closed_quiz_message(quiz)[0].endswith("Answers received — checking them…")


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (QuizStatus.SUBMITTED, "Submitted ✅"),
        (QuizStatus.SKIPPED, "Skipped — you moved on"),
        (QuizStatus.EXPIRED, "Sent as a new message (the quiz had expired)"),
        (QuizStatus.ANSWERED, "Answers received — checking them…"),
    ],
)
def test_closed_quiz_shows_answers_and_status(status: QuizStatus, line: str) -> None:
    quiz = make_quiz([mc(), free(), free()], ["3/4", "Because <b>", None], status=status)
    text, blocks = closed_quiz_message(quiz)
    assert text == f"Quiz: Fractions (3 questions) — {line}"
    assert not buttons(blocks)
    assert not any(b["type"] == "actions" or "accessory" in b for b in blocks)
    assert [b["text"]["text"] for b in blocks if b["type"] == "section"] == [
        "*1.* 1/2 + 1/4?",
        ">3/4",
        "*2.* Why?",
        ">Because &lt;b&gt;",
        "*3.* Why?",
        "—",
    ]
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}


@pytest.mark.parametrize("status", [QuizStatus.OPEN, QuizStatus.INVALID])
def test_closed_quiz_rejects_open_statuses(status: QuizStatus) -> None:
    with pytest.raises(ValueError, match="not closed"):
        closed_quiz_message(make_quiz([mc()], status=status))


# -- free_response_modal -----------------------------------------------------------------


def test_free_response_modal() -> None:
    quiz = make_quiz([mc(), free("Explain <this>")], ["3/4", None])
    modal = free_response_modal(quiz, 1, "meta:42:1")
    assert View(**modal).to_dict() == modal
    assert modal["type"] == "modal"
    assert modal["callback_id"] == VIEW_FREE_RESPONSE
    assert modal["private_metadata"] == "meta:42:1"
    assert modal["title"]["text"] == "Your answer" and len(modal["title"]["text"]) <= 24
    assert modal["submit"]["text"] == "Save"
    assert modal["close"]["text"] == "Cancel"
    context, section, input_block = modal["blocks"]
    assert context["elements"][0]["text"] == "Fractions · question 2 of 2"
    assert section["text"]["text"] == "Explain &lt;this&gt;"
    assert input_block["block_id"] == FREE_INPUT_BLOCK
    element = input_block["element"]
    assert element == {
        "type": "plain_text_input",
        "action_id": FREE_INPUT_ACTION,
        "multiline": True,
        "max_length": 3000,
    }


@pytest.mark.parametrize(
    ("answer", "initial"),
    [(None, None), ("", None), ("Because.", "Because."), ("x" * 3000, "x" * 3000)],
)
def test_free_response_modal_prefills_current_answer(
    answer: str | None, initial: str | None
) -> None:
    modal = free_response_modal(make_quiz([free()], [answer]), 0, "m")
    assert modal["blocks"][2]["element"].get("initial_value") == initial
    View(**modal).to_dict()


def test_free_response_modal_biggest_question() -> None:
    modal = free_response_modal(make_quiz([free(BIG)], title="<" * 150), 0, "m" * 3000)
    assert View(**modal).to_dict() == modal
    assert all(len(t) <= 3000 for t in mrkdwn_texts(modal["blocks"]))


@pytest.mark.parametrize("index", [-1, 2, 99])
def test_free_response_modal_rejects_bad_index(index: int) -> None:
    with pytest.raises(QuizPayloadError):
        free_response_modal(make_quiz([free(), free()]), index, "m")


def test_free_response_modal_rejects_multiple_choice() -> None:
    with pytest.raises(QuizPayloadError, match="not free response"):
        free_response_modal(make_quiz([mc()]), 0, "m")


def test_free_response_modal_rejects_long_metadata() -> None:
    with pytest.raises(ValueError, match="private_metadata"):
        free_response_modal(make_quiz([free()]), 0, "m" * 3001)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        ({"state": {"values": {"answer": {"answer_input": {"value": "42"}}}}}, "42"),
        ({"state": {"values": {"answer": {"answer_input": {"value": None}}}}}, None),
        ({"state": {"values": {"answer": {"answer_input": {}}}}}, None),
        ({"state": {"values": {"answer": {"answer_input": {"value": "4\ud8002"}}}}}, "4\ufffd2"),
        ({"state": {"values": {"answer": {"answer_input": {"value": "4\x002"}}}}}, "42"),
    ],
)
def test_parse_free_answer(view: dict[str, Any], expected: str | None) -> None:
    assert parse_free_answer(view) == expected


@pytest.mark.parametrize(
    "view",
    [
        {},
        {"state": {}},
        {"state": {"values": {"other": {}}}},
        {"state": {"values": {"answer": {"answer_input": "x"}}}},
        {"state": {"values": {"answer": {"answer_input": {"value": 3}}}}},
        {"state": None},
    ],
)
def test_parse_free_answer_rejects_malformed(view: dict[str, Any]) -> None:
    with pytest.raises(QuizPayloadError):
        parse_free_answer(view)


# -- parse_action ------------------------------------------------------------------------


def test_every_button_parses_back() -> None:
    quiz = make_quiz([mc(), free(), mc(choices=[str(i) for i in range(10)])], quiz_id=7)
    _, blocks = quiz_message(quiz)
    parsed = [parse_action(b["action_id"], b["value"]) for b in buttons(blocks)]
    assert parsed[:5] == [
        QuizAction(QuizActionKind.CHOICE, 7, 0, 0),
        QuizAction(QuizActionKind.CHOICE, 7, 0, 1),
        QuizAction(QuizActionKind.CHOICE, 7, 0, 2),
        QuizAction(QuizActionKind.OPEN_FREE, 7, 1, None),
        QuizAction(QuizActionKind.CHOICE, 7, 2, 0),
    ]
    assert parsed[-1] == QuizAction(QuizActionKind.SUBMIT, 7, None, None)
    assert len(parsed) == 3 + 1 + 10 + 1


@pytest.mark.parametrize(
    ("action_id", "pattern"),
    [
        ("quiz_choice:0:1", ACTION_CHOICE_PATTERN),
        ("quiz_choice", ACTION_CHOICE_PATTERN),
        ("quiz_free_open:3", ACTION_OPEN_FREE_PATTERN),
        ("quiz_submit", ACTION_SUBMIT_PATTERN),
    ],
)
def test_patterns_match_their_own_ids_only(action_id: str, pattern: re.Pattern[str]) -> None:
    patterns = [ACTION_CHOICE_PATTERN, ACTION_OPEN_FREE_PATTERN, ACTION_SUBMIT_PATTERN]
    assert [p for p in patterns if p.search(action_id)] == [pattern]


@pytest.mark.parametrize("action_id", ["quiz_choicex", "xquiz_choice:0:1", "quiz_free", "submit"])
def test_patterns_ignore_other_ids(action_id: str) -> None:
    patterns = [ACTION_CHOICE_PATTERN, ACTION_OPEN_FREE_PATTERN, ACTION_SUBMIT_PATTERN]
    assert not any(p.search(action_id) for p in patterns)


def test_action_constants() -> None:
    assert (ACTION_CHOICE, ACTION_OPEN_FREE, ACTION_SUBMIT) == (
        "quiz_choice",
        "quiz_free_open",
        "quiz_submit",
    )
    assert (VIEW_FREE_RESPONSE, FREE_INPUT_BLOCK, FREE_INPUT_ACTION) == (
        "quiz_free_response",
        "answer",
        "answer_input",
    )


@pytest.mark.parametrize(
    ("action_id", "value", "expected"),
    [
        ("quiz_choice:0:1", "42:0:1", QuizAction(QuizActionKind.CHOICE, 42, 0, 1)),
        ("quiz_choice:9:9", "0:9:9", QuizAction(QuizActionKind.CHOICE, 0, 9, 9)),
        ("quiz_free_open:2", "42:2", QuizAction(QuizActionKind.OPEN_FREE, 42, 2)),
        ("quiz_submit", "123456789012", QuizAction(QuizActionKind.SUBMIT, 123456789012)),
    ],
)
def test_parse_action(action_id: str, value: str, expected: QuizAction) -> None:
    assert parse_action(action_id, value) == expected


@pytest.mark.parametrize(
    ("action_id", "value"),
    [
        (None, "42"),
        ("quiz_submit", None),
        ("", ""),
        ("other_action", "42"),
        ("quiz_choice", "42:0:1"),
        ("quiz_choice:0", "42:0"),
        ("quiz_choice:0:1", "42:0:2"),  # disagree
        ("quiz_choice:1:1", "42:0:1"),  # disagree
        ("quiz_choice:0:1", "42:0"),
        ("quiz_choice:0:1", "42:0:1:5"),
        ("quiz_choice:a:b", "42:a:b"),
        ("quiz_choice:-1:0", "42:-1:0"),
        ("quiz_choice:00:1", "42:00:1"),
        ("quiz_choice:0:1", " 42:0:1"),
        ("quiz_choice:0:1 ", "42:0:1"),
        ("quiz_choice:0:1", "x:0:1"),
        ("quiz_choice:99999:1", "42:99999:1"),
        ("quiz_free_open", "42"),
        ("quiz_free_open:0", "42:0:0"),
        ("quiz_free_open:0:0", "42:0:0"),
        ("quiz_submit", ""),
        ("quiz_submit", "abc"),
        ("quiz_submit", "-1"),
        ("quiz_submit", "4.2"),
        ("quiz_submit", "1" * 19),
        ("quiz_submit:1", "1"),
        ("quiz_submit", "٤٢"),  # non-ASCII digits
    ],
)
def test_parse_action_rejects_malformed(action_id: str | None, value: str | None) -> None:
    with pytest.raises(QuizPayloadError):
        parse_action(action_id, value)


def test_payload_error_is_a_value_error() -> None:
    assert issubclass(QuizPayloadError, ValueError)


# -- escaping and truncation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a & b", "a &amp; b"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<!here|here>", "&lt;!here|here&gt;"),
        ("&lt;", "&amp;lt;"),
        ("*bold* _it_ `code`", "*bold* _it_ `code`"),
        ("", ""),
    ],
)
def test_escape_mrkdwn(text: str, escaped: str) -> None:
    assert escape_mrkdwn(text) == escaped


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("a&lt;b", 4, "a…"),  # would cut "&lt;" -> drop it whole
        ("a&lt;b", 5, "a…"),
        ("a&lt;bc", 6, "a&lt;…"),
        ("ab&amp;", 6, "ab…"),
        ("ab&amp;", 7, "ab&amp;"),
        ("a&b&amp;c", 9, "a&b&amp;c"),
        ("&amp;&amp;&amp;", 12, "&amp;&amp;…"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    result = truncate(text, limit)
    assert result == expected
    assert len(result) <= limit
