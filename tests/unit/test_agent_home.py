"""The Home tab view builder (bot/agent/home)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.agent.home import (
    MAX_ITEMS,
    HomeConversation,
    HomeQuiz,
    home_view,
    slack_date,
)
from tests.fakes.slack_blocks import view_errors

WHEN = datetime(2026, 11, 29, 14, 5, tzinfo=UTC)
LINK = "https://tutorbot-test.slack.com/archives/DU1/p1700000000000100"
EVIL = "<!channel> & <@U123> <https://evil.example|click>"


def _texts(view: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for block in view["blocks"]:
        if isinstance(block.get("text"), dict):
            texts.append(block["text"]["text"])
        texts += [e["text"] for e in block.get("elements", []) if "text" in e]
    return texts


def _view(
    conversations: list[HomeConversation] | None = None,
    quizzes: list[HomeQuiz] | None = None,
    **kw: str,
) -> dict[str, Any]:
    view = home_view(
        conversations=conversations or [],
        quizzes=quizzes or [],
        model=kw.get("model", "gpt-4o-mini"),
        runtime=kw.get("runtime", "responses"),
    )
    assert view_errors(view) == []  # the fake's Block Kit checks: type home, ≤100 blocks, ≤3000
    return view


def test_empty_home() -> None:
    view = _view()
    assert view["type"] == "home"
    text = "\n".join(_texts(view))
    assert "No conversations yet" in text and "No quizzes yet" in text
    assert "`gpt-4o-mini` via the OpenAI Responses API" in text
    assert "/tutor quiz" in text and "Messages" in text  # how to use it


@pytest.mark.parametrize(
    ("runtime", "shown"),
    [
        ("assistants", "Assistants API (v2 protocol)"),
        ("chat", "Chat Completions"),
        ("other<x>", "other&lt;x&gt; runtime"),
    ],
)
def test_runtime_names(runtime: str, shown: str) -> None:
    assert shown in "\n".join(_texts(_view(runtime=runtime)))


def test_conversations_link_to_their_threads() -> None:
    conversations = [
        HomeConversation(f"Question {i}", LINK + str(i), WHEN - timedelta(hours=i))
        for i in range(25)
    ]
    text = "\n".join(_texts(_view(conversations)))
    assert f"• <{LINK}0|Question 0> · <!date^{int(WHEN.timestamp())}^" in text
    assert "Question 19" in text and "Question 20" not in text  # the latest MAX_ITEMS
    assert text.count("• <https://") == MAX_ITEMS


@pytest.mark.parametrize(
    "permalink",
    [
        None,
        "",
        "javascript:alert(1)",
        "https://x.example/a|b",
        "https://x.example/a b",
        "https://x.example/>",
        "https://" + "x" * 1000,
    ],
)
def test_unsafe_or_missing_permalinks_are_not_links(permalink: str | None) -> None:
    text = "\n".join(_texts(_view([HomeConversation("Fractions", permalink, WHEN)])))
    assert "• Fractions · <!date^" in text


def test_user_text_is_escaped() -> None:
    view = _view(
        [HomeConversation(EVIL, LINK, WHEN)],
        [HomeQuiz(EVIL, WHEN, [EVIL], [EVIL], submitted=False)],
    )
    text = "\n".join(_texts(view))
    assert "<!channel>" not in text and "<@U123>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in text


def test_quizzes_show_answers_and_state() -> None:
    quizzes = [
        HomeQuiz(
            "Fractions",
            WHEN,
            ["1/2 + 1/4?", "Simplify 4/8"],
            ["3/4", None],
            submitted=False,
            permalink=LINK,
        ),
        HomeQuiz("Equations", WHEN, ["3x + 11 = 14"], ["x = 1"], submitted=True),
        HomeQuiz("Short answers list", WHEN, ["a", "b"], ["yes"], submitted=False),
        HomeQuiz("Moved on", WHEN, ["c"], [None], submitted=False, skipped=True),
    ]
    texts = _texts(_view(quizzes=quizzes))
    fractions = next(t for t in texts if "Fractions" in t)
    assert fractions.startswith(f"*<{LINK}|Fractions>* · <!date^")
    assert fractions.endswith("📝 Open\n1. 1/2 + 1/4? → 3/4\n2. Simplify 4/8 → _no answer yet_")
    equations = next(t for t in texts if "Equations" in t)
    assert "✅ Submitted" in equations and "1. 3x + 11 = 14 → x = 1" in equations
    short = next(t for t in texts if "Short answers" in t)
    assert short.endswith("2. b → _no answer yet_")
    moved_on = next(t for t in texts if "Moved on" in t)
    assert "⏭️ Skipped" in moved_on and "📝 Open" not in moved_on


def test_limits_hold_for_the_largest_home() -> None:
    """20 conversations and 20 ten-question quizzes, every text at its longest."""
    long_link = "https://tutorbot-test.slack.com/archives/" + "C" * 950
    conversations = [HomeConversation("t" * 500, long_link, WHEN)] * 30
    quiz = HomeQuiz("q" * 500, WHEN, ["? " * 1500] * 10, ["a " * 1500] * 10, True, long_link)
    view = _view(conversations, [quiz] * 30, model="m" * 500, runtime="r" * 500)
    assert len(view["blocks"]) <= 100
    for text in _texts(view):
        assert len(text) <= 3000
    quiz_text = next(t for t in _texts(view) if t.startswith("*<"))
    assert quiz_text.endswith("\n…")  # whole question lines, then an ellipsis
    assert quiz_text.count("\n") < 10


@pytest.mark.parametrize(
    ("when", "epoch", "fallback"),
    [
        (WHEN, 1795961100, "2026-11-29 14:05 UTC"),
        (datetime(2026, 11, 29, 14, 5), 1795961100, "2026-11-29 14:05 UTC"),  # naive = UTC
        (
            datetime(2026, 11, 29, 15, 5, tzinfo=timezone(timedelta(hours=1))),
            1795961100,
            "2026-11-29 14:05 UTC",
        ),
    ],
)
def test_slack_date(when: datetime, epoch: int, fallback: str) -> None:
    assert slack_date(when) == f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{fallback}>"
