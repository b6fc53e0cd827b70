"""The console's pure parts: Slack messages as terminal text, quizzes as numbered prompts,
and what the student types at them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.console.quiz import (
    Entry,
    QuizPrompt,
    QuizQuestion,
    Typed,
    parse_choice,
    parse_free,
    read_quiz,
)
from bot.console.render import (
    closed_quiz_status,
    is_quiz_message,
    message_text,
    plain_mrkdwn,
    render_blocks,
    task_line,
)
from bot.domain import Question, QuestionType, Quiz, QuizStatus
from bot.quiz.blocks import closed_quiz_message, quiz_message
from bot.rendering import error_text, progress_text, render_work
from bot.runtime.base import CodeStep, StepKind, StepState, StepUpdate
from bot.slack.answer import task_chunk

MC = QuestionType.MULTIPLE_CHOICE
FREE = QuestionType.FREE_RESPONSE


def make_quiz(
    questions: Sequence[Question],
    answers: Sequence[str | None] | None = None,
    *,
    status: QuizStatus = QuizStatus.OPEN,
    title: str = "Fractions & ratios",
) -> Quiz:
    return Quiz(
        id=7,
        turn_id=1,
        thread_id=1,
        call_id="call_1",
        title=title,
        questions=list(questions),
        answers=list(answers) if answers is not None else [None] * len(questions),
        status=status,
        channel="console",
        message_ts="1.000001",
    )


QUESTIONS = [
    Question("Is 1/2 < 2/3 & why?", MC, ("yes", "no", "<b>maybe</b>")),
    Question("Explain *how* you compare them.", FREE),
]


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mrkdwn", "plain"),
    [
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
        ("see <https://example.org|the docs>", "see the docs (https://example.org)"),
        ("see <https://example.org>", "see https://example.org"),
        ("for <@U123>, in <#C1|general>", "for @U123, in @general"),
        (":warning: Sorry", "⚠️ Sorry"),
        (":hourglass_flowing_sand: Thinking…", "⏳ Thinking…"),
        (":unknown_emoji: stays", ":unknown_emoji: stays"),
        ("&amp;lt; is how you write &lt;", "&lt; is how you write <"),
    ],
)
def test_mrkdwn_reads_plainly(mrkdwn: str, plain: str) -> None:
    assert plain_mrkdwn(mrkdwn) == plain


def test_an_open_quiz_renders_without_its_buttons() -> None:
    _, blocks = quiz_message(make_quiz(QUESTIONS))
    shown = render_blocks(blocks)
    assert shown.splitlines()[0] == "Fractions & ratios"
    assert "*1.* Is 1/2 < 2/3 & why?" in shown
    assert "Answer every question, then press *Submit*. (0 of 2 answered)" in shown
    assert "Submit]" not in shown and "quiz_" not in shown
    assert is_quiz_message(blocks)
    assert closed_quiz_status(blocks) is None


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (QuizStatus.SUBMITTED, "Submitted ✅"),
        (QuizStatus.SKIPPED, "Skipped — you moved on"),
        (QuizStatus.ANSWERED, "Answers received — checking them…"),
    ],
)
def test_a_closed_quiz_says_how_it_ended(status: QuizStatus, line: str) -> None:
    _, blocks = closed_quiz_message(make_quiz(QUESTIONS, ["yes", "Cross-multiply"], status=status))
    assert not is_quiz_message(blocks)
    assert closed_quiz_status(blocks) == line
    assert ">Cross-multiply" in render_blocks(blocks)


def test_notes_work_and_errors_read_as_in_slack() -> None:
    error = error_text("Sorry — the model service failed.")
    assert message_text(error.text, error.blocks) == "⚠️ Sorry — the model service failed."
    progress = progress_text("Thinking…")
    assert message_text(progress.text, progress.blocks) == "⏳ Thinking…"
    [work] = render_work([CodeStep(code="print(6 / 2)", logs="3.0")])
    shown = message_text(work.text, work.blocks)
    assert shown.startswith("**Show work** — the code I ran")
    assert "```python\nprint(6 / 2)\n```" in shown and "```\n3.0\n```" in shown
    # Text without blocks is mrkdwn.
    assert message_text("_I made a file (a&amp;b.csv)_", None) == "_I made a file (a&b.csv)_"
    # Interactive blocks (feedback buttons) have no text to show.
    feedback = [{"type": "context_actions", "elements": [{"type": "feedback_buttons"}]}]
    assert render_blocks(feedback) == ""


@pytest.mark.parametrize(
    ("state", "line"),
    [
        (StepState.WRITING, "· Writing code…"),
        (StepState.RUNNING, "· Running code…"),
        (StepState.DONE, "✓ Ran code"),
        (StepState.FAILED, "✗ Running code — It failed"),
    ],
)
def test_task_steps_read_as_the_timeline(state: StepState, line: str) -> None:
    assert task_line(task_chunk(StepUpdate("step_1", StepKind.CODE, state))) == line


# -- quizzes as prompts ---------------------------------------------------------------------


def test_a_quiz_message_becomes_numbered_questions() -> None:
    _, blocks = quiz_message(make_quiz(QUESTIONS))
    assert read_quiz(blocks) == QuizPrompt(
        quiz_id=7,
        title="Fractions & ratios",
        questions=(
            QuizQuestion(0, "Is 1/2 < 2/3 & why?", ("yes", "no", "<b>maybe</b>")),
            QuizQuestion(1, "Explain *how* you compare them."),
        ),
    )


def test_a_chosen_answer_is_not_part_of_the_choice() -> None:
    _, blocks = quiz_message(make_quiz(QUESTIONS, ["no", "Cross-multiply"]))
    prompt = read_quiz(blocks)
    assert prompt is not None
    assert prompt.questions[0].choices == ("yes", "no", "<b>maybe</b>")
    assert prompt.questions[1].free_response


def test_blocks_without_a_quiz_are_not_one() -> None:
    _, closed = closed_quiz_message(make_quiz(QUESTIONS, ["no", "x"], status=QuizStatus.SUBMITTED))
    assert read_quiz(closed) is None
    assert read_quiz([{"type": "markdown", "text": "hello"}]) is None


@pytest.mark.parametrize(
    ("typed", "entry"),
    [
        ("2", Entry(Typed.CHOICE, choice=1)),
        (" 2 ", Entry(Typed.CHOICE, choice=1)),
        ("2)", Entry(Typed.CHOICE, choice=1)),
        ("(3)", Entry(Typed.CHOICE, choice=2)),
        ("1.", Entry(Typed.CHOICE, choice=0)),
        ("x", Entry(Typed.AGAIN)),
        ("", Entry(Typed.AGAIN)),
        ("0", Entry(Typed.AGAIN)),
        ("4", Entry(Typed.AGAIN)),
        ("-1", Entry(Typed.AGAIN)),
        ("2 3", Entry(Typed.MESSAGE, text="2 3")),
        ("  tell me more first ", Entry(Typed.MESSAGE, text="tell me more first")),
        ("/skip", Entry(Typed.SKIP)),
        (" /SKIP ", Entry(Typed.SKIP)),
        ("exit", Entry(Typed.LEAVE)),
        ("Quit", Entry(Typed.LEAVE)),
    ],
)
def test_what_is_typed_at_a_multiple_choice_question(typed: str, entry: Entry) -> None:
    assert parse_choice(typed, 3) == entry


@pytest.mark.parametrize(
    ("typed", "entry"),
    [
        ("  Divide both sides by 2. ", Entry(Typed.ANSWER, text="Divide both sides by 2.")),
        ("2", Entry(Typed.ANSWER, text="2")),
        ("", Entry(Typed.AGAIN)),
        ("   ", Entry(Typed.AGAIN)),
        ("/skip", Entry(Typed.SKIP)),
        ("exit", Entry(Typed.LEAVE)),
    ],
)
def test_what_is_typed_at_a_free_response_question(typed: str, entry: Entry) -> None:
    assert parse_free(typed) == entry
