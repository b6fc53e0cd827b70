"""Slack formatting for tutorbot: pure functions from model output to message payloads.

Answers go out as Slack ``markdown`` blocks, so Slack renders the model's standard Markdown
itself; no Markdown-to-mrkdwn conversion is needed.
"""

from bot.rendering._messages import (
    MARKDOWN_LIMIT,
    NO_ANSWER,
    SlackMessage,
    error_text,
    progress_text,
    render_answer,
    render_markdown,
    render_work,
)
from bot.rendering._split import split_markdown
from bot.rendering._text import escape_mrkdwn, fallback_text, truncate

__all__ = [
    "MARKDOWN_LIMIT",
    "NO_ANSWER",
    "SlackMessage",
    "error_text",
    "escape_mrkdwn",
    "fallback_text",
    "progress_text",
    "render_answer",
    "render_markdown",
    "render_work",
    "split_markdown",
    "truncate",
]
