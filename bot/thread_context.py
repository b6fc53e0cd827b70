"""What a Slack thread said before the bot's conversation began: pure, table-tested.

Used when the bot joins a thread midway (a mention under someone else's message) and when
its database lost a thread it had been in: the model gets the earlier messages as context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.agent.surfaces import GREETING_EVENT

MAX_MESSAGE_CHARS = 600
MAX_CONTEXT_CHARS = 6000
LOST_MEMORY_NOTE = (
    "_I don't have this thread in my memory any more (my storage was reset), so I've "
    "re-read the messages above and I'm starting fresh from here._"
)
_PLACEHOLDER = re.compile(r":hourglass_flowing_sand:")


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds), int(fraction or 0)
    except ValueError:
        return 0, 0


@dataclass(frozen=True, slots=True)
class ThreadContext:
    text: str | None  # the earlier messages for the model, or None when there are none
    bot_was_here: bool  # the bot had posted in the thread (its memory of it was lost)


def is_bot_message(message: Mapping[str, Any], *, bot_user_id: str, bot_id: str) -> bool:
    return bool(
        (bot_id and message.get("bot_id") == bot_id)
        or (bot_user_id and message.get("user") == bot_user_id)
    )


def earlier_context(
    messages: Sequence[Mapping[str, Any]], *, before_ts: str, bot_user_id: str, bot_id: str
) -> ThreadContext:
    """Summarise the thread's messages older than ``before_ts`` for the model."""
    lines: list[str] = []
    bot_was_here = False
    for message in sorted(messages, key=lambda m: _ts_key(str(m.get("ts") or ""))):
        ts = str(message.get("ts") or "")
        if not ts or _ts_key(ts) >= _ts_key(before_ts):
            continue
        text = str(message.get("text") or "").strip()
        if (message.get("metadata") or {}).get("event_type") == GREETING_EVENT:
            continue  # the bot's greeting: a conversation under it is a new one
        if is_bot_message(message, bot_user_id=bot_user_id, bot_id=bot_id):
            bot_was_here = True
            if not text or _PLACEHOLDER.search(text):
                continue
            who = "tutor (you)"
        elif message.get("bot_id") or message.get("subtype") not in (
            None,
            "thread_broadcast",
            "file_share",
        ):
            continue
        else:
            who = f"<@{message.get('user') or 'someone'}>"
        if not text:
            continue
        if bot_user_id:
            text = text.replace(f"<@{bot_user_id}>", "@tutor")
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 1] + "…"
        lines.append(f"{who}: {text}")
    # Keep the latest messages when the thread is long.
    kept: list[str] = []
    total = 0
    for line in reversed(lines):
        total += len(line) + 1
        if total > MAX_CONTEXT_CHARS:
            break
        kept.append(line)
    if not kept:
        return ThreadContext(None, bot_was_here)
    kept.reverse()
    text = "Earlier messages in this Slack thread, for context:\n" + "\n".join(kept)
    return ThreadContext(text, bot_was_here)


def with_context(context: ThreadContext, text: str) -> str:
    if context.text is None:
        return text
    return f"{context.text}\n\nThe message to answer now:\n{text}"
