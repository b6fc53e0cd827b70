"""Greeting, suggested prompts, DM titles and the context note (bot/agent)."""

from __future__ import annotations

import pytest

from bot.agent.context import channel_name, context_note
from bot.agent.surfaces import (
    DEFAULT_TITLE,
    MAX_TITLE_CHARS,
    SUGGESTED_PROMPTS,
    SuggestedPrompt,
    dm_title,
    greeting_text,
    plain_text,
    suggested_prompts_payload,
)


def test_suggested_prompts_payload() -> None:
    payload = suggested_prompts_payload()
    assert 1 <= len(payload) <= 4
    assert payload[0] == {"title": "Quiz me on fractions", "message": "Quiz me on fractions."}
    assert [p["title"] for p in payload][:3] == [
        "Quiz me on fractions",
        "Solve 3x + 11 = 14 step by step",
        "Explain a PDF I share",
    ]
    for prompts in ((), (*SUGGESTED_PROMPTS, SuggestedPrompt("a", "b"))):
        with pytest.raises(ValueError):
            suggested_prompts_payload(prompts)


@pytest.mark.parametrize(
    ("user", "hello"),
    [("U1", "Hi <@U1>!"), ("W0ABC", "Hi <@W0ABC>!"), (None, "Hi!"), ("<!channel>", "Hi!")],
)
def test_greeting(user: str | None, hello: str) -> None:
    text = greeting_text(user)
    assert text.startswith(hello + " I'm tutorbot")
    assert "<!channel>" not in text and "quiz" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@U123> what is *2+2*?", "what is 2+2?"),
        (
            "<@U123|ada> asked in <#C1|maths>: see <https://x.example/a|this page>",
            "@ada asked in #maths: see this page",
        ),
        ("open <https://x.example/a?b=1&amp;c=2>", "open https://x.example/a?b=1&c=2"),
        ("<!here> x &lt; y &amp;&amp; y &gt; z", "@here x < y && y > z"),
        ("<!subteam^S1|@tutors> help", "@tutors help"),
        ("<!date^1700000000^{date}|Nov 14> exam", "Nov 14 exam"),
        ("```print(1)```\n`x = 1` _really_ ~no~", "print(1) x = 1 really no"),
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
        ("  many\n\n lines\t here ", "many lines here"),
        ("", ""),
    ],
)
def test_plain_text(text: str, expected: str) -> None:
    assert plain_text(text) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Solve 3x + 11 = 14", "Solve 3x + 11 = 14"),
        ("<@UBOT>", DEFAULT_TITLE),
        ("   ", DEFAULT_TITLE),
        (
            "*Why* is the sky blue?\nPlease explain with <https://x.example|a diagram>.",
            "Why is the sky blue? Please explain with a diagram.",
        ),
        (
            "Can you explain how to integrate x squared times e to the x by parts, step by step?",
            "Can you explain how to integrate x squared times e to the…",
        ),
        ("x" * 100, "x" * (MAX_TITLE_CHARS - 1) + "…"),  # no space to cut at: hard cut
        ("word " * 30, "word word word word word word word word word word word…"),
    ],
)
def test_dm_title(question: str, expected: str) -> None:
    title = dm_title(question)
    assert title == expected
    assert 1 <= len(title) <= MAX_TITLE_CHARS
    assert "<" not in title and "\n" not in title


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("maths-101", "maths-101"),
        ("#year_9", "year_9"),
        (" général ", "général"),
        ("evil> <!channel>", "evilchannel"),
        ("", None),
        (None, None),
        ("###", None),
        ("x" * 100, "x" * 80),
    ],
)
def test_channel_name(name: str | None, expected: str | None) -> None:
    assert channel_name(name) == expected


def test_context_note() -> None:
    note = context_note("#maths-101")
    assert note is not None and "#maths-101" in note and "cannot see" in note
    assert context_note("<>") is None
