"""``ConsoleReplies`` on a screen writing to a string: what a terminal shows for each of
the core's Slack calls (streams, edits, rewrites after a restart, status, files)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.console.screen import Screen
from bot.console.terminal import ConsoleReplies, SlackTs
from bot.domain import Question, QuestionType, Quiz, QuizStatus
from bot.quiz.blocks import closed_quiz_message, quiz_message
from bot.replies import SlackError

C, T = "console", "1700000000.000001"


def text(chunk: str) -> dict[str, str]:
    return {"type": "markdown_text", "text": chunk}


def task(status: str, title: str = "Running code", step: str = "step_1") -> dict[str, str]:
    return {"type": "task_update", "id": step, "title": title, "status": status}


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def replies(out: io.StringIO, tmp_path: Path) -> ConsoleReplies:
    return ConsoleReplies(Screen(out, styled=False), tmp_path / "files")


async def test_a_stream_prints_as_it_comes(replies: ConsoleReplies, out: io.StringIO) -> None:
    ts = await replies.start_stream(
        C, T, recipient_user="u", recipient_team="t", chunks=[text(" ")]
    )
    assert out.getvalue() == ""  # a blank start shows nothing
    await replies.append_stream(C, ts, [task("in_progress")])
    await replies.append_stream(C, ts, [task("in_progress")])  # unchanged: not again
    await replies.append_stream(C, ts, [text("x = "), task("complete", "Ran code")])
    await replies.stop_stream(C, ts, chunks=[text("3.")])
    # The step's end waits for the end of the line it would cut into.
    assert out.getvalue() == "· Running code…\nx = 3.\n✓ Ran code\n"
    with pytest.raises(SlackError) as stopped:
        await replies.append_stream(C, ts, [text("more")])
    assert stopped.value.error == "message_not_in_streaming_state"


async def test_an_edited_message_prints_what_was_added(
    replies: ConsoleReplies, out: io.StringIO
) -> None:
    ts = await replies.post_markdown(C, T, "Solve it")
    await replies.update_markdown(C, ts, "Solve it step")
    await replies.update_markdown(C, ts, "Solve it step by step.")
    await replies.update_markdown(C, ts, "Solve it step by step.")
    assert out.getvalue() == "Solve it step by step."


async def test_a_message_rewritten_otherwise_prints_again_whole(
    replies: ConsoleReplies, out: io.StringIO
) -> None:
    ts = await replies.post_markdown(C, T, "First try")
    await replies.post(C, "A note", thread_ts=T)
    await replies.update_markdown(C, ts, "First try, continued")  # not the last thing shown
    await replies.update_markdown(C, "1600000000.000001", "From before a restart")
    assert out.getvalue() == (
        "First try\n\nA note\n\nFirst try, continued\n\nFrom before a restart"
    )


async def test_a_stream_from_before_a_restart_is_refused_as_slack_does(
    replies: ConsoleReplies,
) -> None:
    with pytest.raises(SlackError) as refused:
        await replies.stop_stream(C, "1600000000.000001")
    assert refused.value.error == "message_not_in_streaming_state"


def make_quiz(status: QuizStatus = QuizStatus.OPEN) -> Quiz:
    return Quiz(
        id=3,
        turn_id=1,
        thread_id=1,
        call_id="call_1",
        title="Warm-up",
        questions=[Question("2 + 2?", QuestionType.MULTIPLE_CHOICE, ("3", "4"))],
        answers=["4"] if status is not QuizStatus.OPEN else [None],
        status=status,
        channel=C,
    )


async def test_quizzes_wait_for_the_prompt_and_only_their_end_is_printed(
    replies: ConsoleReplies, out: io.StringIO
) -> None:
    quiz_text, blocks = quiz_message(make_quiz())
    ts = await replies.post(C, quiz_text, thread_ts=T, blocks=blocks)
    assert out.getvalue() == ""
    posted = replies.next_quiz()
    assert posted is not None and posted.ts == ts and posted.blocks == blocks
    assert replies.next_quiz() is None
    await replies.update(C, ts, quiz_text, blocks=blocks)  # a pick shown: silent
    for status in (QuizStatus.ANSWERED, QuizStatus.SUBMITTED, QuizStatus.SUBMITTED):
        closed_text, closed = closed_quiz_message(make_quiz(status))
        await replies.update(C, ts, closed_text, blocks=closed)
    assert out.getvalue() == "Warm-up: Submitted ✅\n"


async def test_the_status_is_a_transient_line_on_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    replies = ConsoleReplies(Screen(out, styled=True), tmp_path)
    await replies.set_status(C, T, "is thinking…")
    await replies.post_markdown(C, T, "Hi")
    assert out.getvalue() == "\r\x1b[2K\x1b[2mtutorbot is thinking…\x1b[0m\r\x1b[2KHi"
    piped = io.StringIO()
    replies = ConsoleReplies(Screen(piped, styled=False), tmp_path)
    await replies.set_status(C, T, "is thinking…")
    assert piped.getvalue() == ""


async def test_files_are_saved_never_over_another(
    replies: ConsoleReplies, out: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await replies.upload(C, T, "plot.png", b"one")
    await replies.upload(C, T, "../../plot.png", b"two")
    assert (tmp_path / "files" / "plot.png").read_bytes() == b"one"
    assert (tmp_path / "files" / "plot (2).png").read_bytes() == b"two"
    assert out.getvalue() == (
        "📎 plot.png: saved to files/plot.png\n📎 ../../plot.png: saved to files/plot (2).png\n"
    )


async def test_replies_in_the_thread_are_found_with_their_metadata(
    replies: ConsoleReplies,
) -> None:
    metadata = {"event_type": "tutorbot_reply", "event_payload": {"turn": 1, "part": "work:0"}}
    ts = await replies.post(C, "work", thread_ts=T, metadata=metadata)
    await replies.post(C, "elsewhere", thread_ts="1700000000.999999")
    [mine] = await replies.bot_replies_after(C, T, T)
    assert mine["ts"] == ts and mine["metadata"] == metadata and mine["text"] == "work"
    assert await replies.thread_messages(C, T) == []


def test_timestamps_only_go_up() -> None:
    clock = SlackTs()
    stamps = [clock.next() for _ in range(1000)]
    assert len(set(stamps)) == 1000
    assert [float(s) for s in stamps] == sorted(float(s) for s in stamps)


async def test_a_step_never_cuts_into_a_line_of_text(
    replies: ConsoleReplies, out: io.StringIO
) -> None:
    ts = await replies.start_stream(
        C, T, recipient_user="u", recipient_team="t", chunks=[task("in_progress")]
    )
    await replies.append_stream(C, ts, [text("x = 3, as the code s")])
    await replies.append_stream(C, ts, [task("complete", "Ran code")])
    await replies.append_stream(C, ts, [text("hows.\nNext")])
    await replies.append_stream(C, ts, [task("error", "Running code", "step_2")])
    await replies.stop_stream(C, ts, chunks=[text(" line.")])
    assert out.getvalue() == (
        "· Running code…\nx = 3, as the code shows.\n✓ Ran code\nNext line.\n"
        "✗ Running code — failed\n"
    )


@pytest.mark.parametrize(
    ("echoed", "shown"),
    [(True, "Hi.\n\nyou> Next.\n\nyou> \n"), (False, "Hi.\n\nyou> what next?\nNext.\n\nyou> \n")],
)
def test_prompts_read_like_a_transcript(echoed: bool, shown: str) -> None:
    out = io.StringIO()
    screen = Screen(out, styled=False)
    screen.begin()
    screen.write("Hi.")
    screen.prompt("you> ")
    screen.typed(None if echoed else "what next?")  # a terminal echoes the line itself
    screen.begin()
    screen.write("Next.")
    screen.prompt("you> ")
    screen.finish()  # left at the prompt (Ctrl-D): the shell's prompt starts a line
    assert out.getvalue() == shown
