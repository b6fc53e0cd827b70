"""The ``/tutor stats`` ephemeral message (bot/agent/stats)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.agent.stats import ChannelStats, stats_message
from tests.fakes.slack_blocks import message_block_errors


def _stats(**changes: Any) -> ChannelStats:
    counts: dict[str, Any] = {
        "channel": "C123",
        "questions_answered": 12,
        "quizzes_posted": 4,
        "quizzes_submitted": 3,
        "thumbs_up": 5,
        "thumbs_down": 1,
        "failed_answers": 2,
    }
    return ChannelStats(**{**counts, **changes})


def _fields(blocks: list[dict[str, Any]]) -> dict[str, str]:
    fields = next(b for b in blocks if "fields" in b)["fields"]
    return dict(f["text"].split("\n", 1) for f in fields)


@pytest.mark.parametrize(
    ("stats", "heading", "figures"),
    [
        (
            _stats(),
            "*Tutor stats for <#C123>, the last 7 days*",
            {
                "*Questions answered*": "12",
                "*Failed answers*": "2",
                "*Quizzes posted*": "4",
                "*Quizzes submitted*": "3 (75%)",
                "*👍 Helpful*": "5 (83%)",
                "*👎 Not helpful*": "1 (17%)",
            },
        ),
        (
            _stats(
                questions_answered=0,
                quizzes_posted=0,
                quizzes_submitted=0,
                thumbs_up=0,
                thumbs_down=0,
                failed_answers=0,
                days=1,
            ),
            "*Tutor stats for <#C123>, the last day*",
            {
                "*Questions answered*": "0",
                "*Failed answers*": "0",
                "*Quizzes posted*": "0",
                "*Quizzes submitted*": "0",
                "*👍 Helpful*": "0",
                "*👎 Not helpful*": "0",
            },
        ),
        (_stats(channel="<!channel>"), "*Tutor stats for this channel, the last 7 days*", None),
        (_stats(channel="DU1", days=30), "*Tutor stats for <#DU1>, the last 30 days*", None),
    ],
)
def test_stats_message(stats: ChannelStats, heading: str, figures: dict[str, str] | None) -> None:
    text, blocks = stats_message(stats)
    assert message_block_errors(blocks) == []
    assert blocks[0]["text"]["text"] == heading
    if figures is not None:
        assert _fields(blocks) == figures
    assert str(stats.questions_answered) in text and "👍" in text and "failed answers" in text
    assert "<!channel>" not in text


@pytest.mark.parametrize(
    "changes", [{"thumbs_up": -1}, {"failed_answers": -3}, {"days": 0}, {"days": -7}]
)
def test_counts_cannot_be_negative(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _stats(**changes)
