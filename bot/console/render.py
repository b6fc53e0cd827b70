"""What the core sends Slack, as plain terminal text: pure functions, no I/O.

Answers are standard Markdown and print as they are (a terminal reads Markdown well
enough); Slack's own markup (mrkdwn entities, links, mentions, emoji codes) is turned
into plain text; Block Kit is read for its text, and interactive elements (buttons,
feedback) are left out — the console asks for quiz answers itself (``bot.console.quiz``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.quiz.blocks import ACTION_CHOICE, ACTION_OPEN_FREE, ACTION_SUBMIT

# The emoji codes the bot itself writes, as characters.
EMOJI = {
    ":warning:": "⚠️",
    ":hourglass_flowing_sand:": "⏳",
    ":white_check_mark:": "✅",
    ":x:": "❌",
}
_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_MENTION = re.compile(r"<[@#!]([^|>]+)(?:\|([^>]*))?>")
_EMOJI_CODE = re.compile(r":[a-z0-9_+'-]+:")
_QUIZ_ACTIONS = (ACTION_CHOICE, ACTION_OPEN_FREE, ACTION_SUBMIT)

TASK_MARKS = {"pending": "·", "in_progress": "·", "complete": "✓", "error": "✗"}


def plain_mrkdwn(text: str) -> str:
    """Slack mrkdwn as plain text: links as "label (url)", mentions as "@name", the
    escaped ``&amp; &lt; &gt;`` back as characters, known emoji codes as emoji."""
    text = _LINK.sub(lambda m: f"{m[2]} ({m[1]})" if m[2] and m[2] != m[1] else m[1], text)
    text = _MENTION.sub(lambda m: "@" + (m[2] or m[1]), text)
    text = _EMOJI_CODE.sub(lambda m: EMOJI.get(m[0], m[0]), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: Any) -> str:
    """A text object's content, plain (``plain_text`` as is, ``mrkdwn`` made plain)."""
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text") or "")
    return plain_mrkdwn(text) if obj.get("type") == "mrkdwn" else text


def render_blocks(blocks: Iterable[Mapping[str, Any]]) -> str:
    """The readable text of a message's blocks, one block after another."""
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(_text_of(block.get("text")))
        elif kind == "section":
            lines = [_text_of(block.get("text"))]
            lines += [_text_of(field) for field in block.get("fields") or []]
            parts.append("\n".join(line for line in lines if line))
        elif kind == "markdown":
            parts.append(str(block.get("text") or ""))
        elif kind == "context":
            parts.append(" ".join(_text_of(e) for e in block.get("elements") or []))
        elif kind == "divider":
            parts.append("")
    return "\n".join(parts).strip("\n")


def message_text(text: str, blocks: Sequence[Mapping[str, Any]] | None) -> str:
    """What a posted message shows: its blocks' text, else its (mrkdwn) text."""
    if blocks:
        shown = render_blocks(blocks)
        if shown.strip():
            return shown
    return plain_mrkdwn(text)


def task_line(chunk: Mapping[str, Any]) -> str:
    """A ``task_update`` chunk as the timeline shows it: "· Running code…", "✓ Ran code"."""
    title = str(chunk.get("title") or "Working")
    status = str(chunk.get("status") or "in_progress")
    mark = TASK_MARKS.get(status, "·")
    if status in ("pending", "in_progress"):
        return f"{mark} {title}…"
    if status == "error":
        return f"{mark} {title} — {chunk.get('output') or 'failed'}"
    return f"{mark} {title}"


def is_quiz_message(blocks: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether these are an open quiz's blocks (they carry the quiz's buttons)."""
    for block in blocks or ():
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            action_id = str(element.get("action_id") or "")
            if action_id.split(":", 1)[0] in _QUIZ_ACTIONS:
                return True
    return False


def closed_quiz_status(blocks: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The status line of a closed quiz ("Submitted ✅"…): its last context block."""
    if not blocks or is_quiz_message(blocks):
        return None
    for block in reversed(blocks):
        if block.get("type") == "context":
            return " ".join(_text_of(e) for e in block.get("elements") or []).strip() or None
    return None
