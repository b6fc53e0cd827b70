"""Pure parsers from Slack payloads to what the core takes. No I/O; table-tested."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.conversation import IncomingMessage
from bot.slack_text import storable_text

# Subtypes that are a person saying something; everything else (edits, deletions, joins,
# bot posts…) is acknowledged and ignored.
USER_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
FILE_FIELDS = (
    "id",
    "name",
    "title",
    "mimetype",
    "filetype",
    "size",
    "url_private",
    "url_private_download",
    "mode",
    "file_access",
)
# File fields that are a person's words and end up in notes or the model's input.
FILE_TEXT_FIELDS = frozenset({"name", "title"})


def team_of(body: Mapping[str, Any], event: Mapping[str, Any], fallback: str | None) -> str:
    return str(body.get("team_id") or event.get("team") or fallback or "T0")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def parse_message_event(
    event: Mapping[str, Any], *, team: str, bot_user_id: str | None
) -> IncomingMessage | None:
    """An ``app_mention`` or ``message`` event as an ``IncomingMessage``; None to ignore it."""
    kind = event.get("type")
    if kind not in ("app_mention", "message"):
        return None
    if event.get("subtype") not in USER_SUBTYPES:
        return None
    user = event.get("user")
    if not isinstance(user, str) or not user or event.get("bot_id") or user == bot_user_id:
        return None
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str) or not channel or not ts:
        return None
    raw_text = event.get("text") if isinstance(event.get("text"), str) else ""
    assert isinstance(raw_text, str)
    raw_text = storable_text(raw_text)
    mentioned = bool(bot_user_id) and f"<@{bot_user_id}" in raw_text
    is_dm = event.get("channel_type") == "im" or (kind == "message" and channel.startswith("D"))
    thread_ts = event.get("thread_ts")
    files = event.get("files") if isinstance(event.get("files"), list) else []
    assert isinstance(files, list)
    return IncomingMessage(
        team=team,
        channel=channel,
        user=user,
        text=strip_mention(raw_text, bot_user_id),
        ts=ts,
        thread_ts=thread_ts if isinstance(thread_ts, str) and thread_ts else None,
        addressed=kind == "app_mention" or mentioned or is_dm,
        files=tuple(_file_fields(f) for f in files if isinstance(f, dict)),
    )


def _file_fields(slack_file: Mapping[str, Any]) -> dict[str, Any]:
    fields = {k: slack_file[k] for k in FILE_FIELDS if k in slack_file}
    for key in FILE_TEXT_FIELDS & fields.keys():
        if isinstance(fields[key], str):
            fields[key] = storable_text(fields[key])
    return fields


@dataclass(frozen=True, slots=True)
class SlashCommand:
    action: str  # "help" | "quiz" | "stats" | "ask"
    argument: str


def parse_command_text(text: str | None) -> SlashCommand:
    """``/tutor help``, ``/tutor quiz <topic>``, ``/tutor stats``, ``/tutor <question>``
    (``stats`` followed by more words is a question)."""
    words = storable_text(text or "").strip()
    head, _, rest = words.partition(" ")
    if not words or head.lower() in ("help", "-h", "--help", "?"):
        return SlashCommand("help", "")
    if head.lower() == "quiz":
        return SlashCommand("quiz", rest.strip())
    if words.lower() == "stats":
        return SlashCommand("stats", "")
    return SlashCommand("ask", words)
