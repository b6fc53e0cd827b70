"""The answer as it streams: held-back constructs, cleaning, and where long answers roll over."""

from __future__ import annotations

import pytest

from bot.rendering._live import LiveText, clean_answer, open_fence, roll_over


def stream(pieces: list[str], *, messages: list[int] | None = None) -> tuple[list[str], str]:
    live = LiveText()
    shown = []
    for i, piece in enumerate(pieces):
        shown.append(live.feed(piece, message=messages[i] if messages else 0))
    return shown, "".join(shown) + live.flush()


@pytest.mark.parametrize(
    ("pieces", "visible_early", "whole"),
    [
        (["Hello ", "world"], ["Hello ", "world"], "Hello world"),
        # A file-search marker cut in two is held until it closes, then dropped with its space.
        (
            ["See the notes 【4:0", "†source】 for more."],
            ["See the notes", " for more."],
            "See the notes for more.",
        ),
        # A sandbox link becomes the file's name in bold once it is complete.
        (
            ["Here: [plot.png](sand", "box:/mnt/data/plot.png) done"],
            ["Here: ", "**plot.png** done"],
            "Here: **plot.png** done",
        ),
        # An ordinary link is released as soon as it cannot be a sandbox link.
        (
            ["Read [the docs](https://ex", "ample.com) now"],
            ["Read [the docs](https://ex", "ample.com) now"],
            "Read [the docs](https://example.com) now",
        ),
        # Slack tokens are defused even when split: no <!channel> ping from model text.
        (
            ["Alert <!ch", "annel> now"],
            ["Alert ", "<\u200b!channel> now"],
            "Alert <\u200b!channel> now",
        ),
        (["hi <@U", "123> there"], ["hi ", "<\u200b@U123> there"], "hi <\u200b@U123> there"),
        # Inequalities and array indexing pass straight through.
        (["x < 3 and a[1] = 2"], ["x < 3 and a[1] = 2"], "x < 3 and a[1] = 2"),
        # Unfinished constructs are released at the end, as they are.
        (["trailing 【4:0"], ["trailing"], "trailing 【4:0"),
    ],
)
def test_live_text(pieces: list[str], visible_early: list[str], whole: str) -> None:
    shown, final = stream(pieces)
    assert shown == visible_early
    assert final == whole


def test_messages_of_a_run_are_separated_by_a_blank_line() -> None:
    _, final = stream(["First.", "Second."], messages=[0, 1])
    assert final == "First.\n\nSecond."


def test_raw_characters_are_counted_for_resuming() -> None:
    live = LiveText()
    live.feed("abc 【1†x")
    assert live.raw_chars == len("abc 【1†x")
    assert live.held == " 【1†x"


def test_clean_answer_matches_live_cleaning() -> None:
    # (A marker's leading space may already be shown when the marker starts streaming.)
    text = "A【1:0†s】 [f.png](sandbox:/mnt/data/f.png) <!here>"
    assert clean_answer(text) == stream(list(text))[1]


@pytest.mark.parametrize(
    ("markdown", "fence"),
    [
        ("plain", None),
        ("```python\nx = 1\n```\n", None),
        ("intro\n```python\nx = 1\n", "```python"),
        ("  ~~~\ncode", "  ~~~"),
        ("```\na\n```\n```js\nb", "```js"),
    ],
)
def test_open_fence(markdown: str, fence: str | None) -> None:
    assert open_fence(markdown) == fence


def test_roll_over_prefers_a_paragraph_break() -> None:
    text = "a" * 300 + "\n\n" + "b" * 300
    cut = roll_over(text, 400)
    assert cut.head == "a" * 300
    assert cut.tail == "b" * 300


def test_roll_over_closes_and_reopens_a_fence() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(200))
    text = "Here is the code:\n\n```python\n" + code + "\n```"
    cut = roll_over(text, 500)
    assert len(cut.head) <= 500
    assert cut.head.endswith("\n```") and open_fence(cut.head) is None
    assert cut.tail.startswith("```python\n")
    # Nothing is lost: the code lines appear once across both parts.
    lines = [line for line in (cut.head + "\n" + cut.tail).split("\n") if line.startswith("x")]
    assert lines == [f"x{i} = {i}" for i in range(len(lines))]


def test_roll_over_cuts_a_line_without_breaks() -> None:
    cut = roll_over("z" * 1000, 300)
    assert len(cut.head) <= 300
    assert cut.head + cut.tail == "z" * 1000


@pytest.mark.parametrize(
    ("shown", "pending", "limit"),
    [
        # A paragraph break before the shown end would cut into what Slack shows.
        ("a" * 100 + "\n\n" + "b" * 250, "c" * 200, 400),
        # The shown text fills the room: the cut is right after it, mid-line.
        ("```python\n" + "x = 1\n" * 60 + "y = 2", "  # more\nz = 3\n" * 20, 400),
        # The shown text ends with a line break inside code.
        ("```\n" + "line\n" * 70, "next\n" * 40, 400),
        # Nothing shown yet: the usual cut.
        ("", "w" * 900, 300),
    ],
)
def test_roll_over_never_cuts_into_the_shown_text(shown: str, pending: str, limit: int) -> None:
    cut = roll_over(shown + pending, limit, keep=len(shown))
    assert cut.head.startswith(shown)
    assert open_fence(cut.head) is None, "the message that stays has its fences closed"
    rest = cut.head[len(shown) :]
    # Nothing lost, nothing repeated: the fence lines added are the only extra text.
    joined = (rest + cut.tail).replace("```python", "").replace("```", "").replace("\n", "")
    assert joined == pending.replace("\n", "")
