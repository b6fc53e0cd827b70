"""Text rules shared by the message builders and the payload parsers, free of dependencies."""

from __future__ import annotations


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack gives meaning to (mentions, links, entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def storable_text(text: str) -> str:
    """``text`` as every store and service can take it: lone surrogates become U+FFFD, NULs go.

    Slack delivers JSON, where ``"\\ud800"`` decodes to a lone UTF-16 surrogate that no UTF-8
    encoder (SQLite, PostgreSQL, the model's HTTP client) accepts; PostgreSQL also refuses
    NUL in text. Cleaned once where a person's text enters the bot, so it is kept, not lost.
    A surrogate pair split into two code points is joined back into its character.
    """
    if text.isascii():
        return text.replace("\x00", "")
    cleaned = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return cleaned.replace("\x00", "")
