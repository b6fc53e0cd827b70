"""``/tutor stats``: a channel's last days with the tutor, shown only to the person who asks.

``stats_message`` turns counts (the store's, over ``days``) into the text and blocks of an
ephemeral message (``chat.postEphemeral`` or the command's ``respond``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_DAYS = 7

_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class ChannelStats:
    channel: str  # Slack channel id
    questions_answered: int
    quizzes_posted: int
    quizzes_submitted: int
    thumbs_up: int
    thumbs_down: int
    failed_answers: int
    days: int = DEFAULT_DAYS

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value < 0:
                raise ValueError(f"{f.name} cannot be negative")
        if self.days < 1:
            raise ValueError("days must be at least 1")


def stats_message(stats: ChannelStats) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of the ephemeral stats message."""
    where = f"<#{stats.channel}>" if _CHANNEL_ID.fullmatch(stats.channel) else "this channel"
    period = "the last day" if stats.days == 1 else f"the last {stats.days} days"
    votes = stats.thumbs_up + stats.thumbs_down
    text = (
        f"Tutor stats for {where}, {period}: {stats.questions_answered} questions answered, "
        f"{stats.quizzes_posted} quizzes posted ({stats.quizzes_submitted} submitted), "
        f"{stats.thumbs_up} 👍 / {stats.thumbs_down} 👎, {stats.failed_answers} failed answers."
    )
    figures = [
        ("Questions answered", str(stats.questions_answered)),
        ("Failed answers", str(stats.failed_answers)),
        ("Quizzes posted", str(stats.quizzes_posted)),
        ("Quizzes submitted", _with_share(stats.quizzes_submitted, stats.quizzes_posted)),
        ("👍 Helpful", _with_share(stats.thumbs_up, votes)),
        ("👎 Not helpful", _with_share(stats.thumbs_down, votes)),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Tutor stats for {where}, {period}*"},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in figures
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Only you can see this. 👍 / 👎 are the votes on the tutor's "
                    "answers in this channel.",
                }
            ],
        },
    ]
    return text, blocks


def _with_share(part: int, whole: int) -> str:
    return f"{part} ({round(100 * part / whole)}%)" if whole else str(part)
