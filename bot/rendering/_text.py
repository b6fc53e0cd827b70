"""Text primitives: truncation, mrkdwn escaping, plain fallback text."""

from __future__ import annotations

import re

from bot.slack_text import escape_mrkdwn

FALLBACK_LIMIT = 3000

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
# Characters that would turn a filename or quote into Markdown formatting. "_" is left
# alone: inside words (my_notes.pdf) it is not emphasis, and escaping it would show
# backslashes wherever a renderer ignores escapes.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>~])")

_FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[^`\n]*\n?", re.MULTILINE)
_TABLE_SEPARATOR_LINE = re.compile(
    r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*\n?", re.MULTILINE
)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_BLANK_RUNS = re.compile(r"\n{3,}")


def truncate(text: str, limit: int, suffix: str = "…") -> str:
    """Return ``text`` if it fits in ``limit`` characters, else cut it and end with ``suffix``."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if len(suffix) >= limit:
        return suffix[:limit]
    return text[: limit - len(suffix)].rstrip() + suffix


def escape_markdown(text: str) -> str:
    """Backslash-escape characters that would format literal text (a filename) in Markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def truncate_escaped(text: str, limit: int, suffix: str = "…") -> str:
    """Escape ``text`` for mrkdwn and fit it in ``limit`` without cutting an entity in half."""
    escaped = escape_mrkdwn(text)
    if len(escaped) <= limit:
        return escaped
    head = _PARTIAL_ENTITY.sub("", escaped[: max(limit - len(suffix), 0)])
    return truncate(head.rstrip() + suffix, limit, suffix)


def fallback_text(markdown: str, limit: int = FALLBACK_LIMIT) -> str:
    """Readable plain text from Markdown, for notifications and the ``text`` fallback.

    Drops fence and table-separator lines, heading marks, bold marks, inline-code ticks and
    backslash escapes, turns links into "label (url)", then escapes &, <, > (Slack reads
    ``text`` as mrkdwn) and fits the result in ``limit`` characters.
    """
    text = markdown.replace("\r\n", "\n")
    text = _FENCE_LINE.sub("", text)
    text = _TABLE_SEPARATOR_LINE.sub("", text)
    text = _HEADING.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(lambda m: m[1] if m[1] == m[2] else f"{m[1]} ({m[2]})", text)
    text = _STRONG.sub(r"\2", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _BACKSLASH_ESCAPE.sub(r"\1", text)
    text = _BLANK_RUNS.sub("\n\n", text).strip()
    return truncate_escaped(text, limit)
