"""The one rule of Slack's mrkdwn every message builder shares, kept free of dependencies."""

from __future__ import annotations


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack gives meaning to (mentions, links, entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
