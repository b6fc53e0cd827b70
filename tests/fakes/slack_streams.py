"""Slack's message streaming for the fake: ``chat.startStream`` / ``appendStream`` / ``stopStream``.

The rules enforced (docs.slack.dev and slack_sdk 3.48; see PLATFORM-FACTS "Streaming"):

- a stream is a thread reply: no ``thread_ts`` -> ``invalid_thread_ts``; outside DMs both
  recipients are required (``missing_recipient_user_id`` / ``missing_recipient_team_id``);
- each call carries ``markdown_text`` or ``chunks``, never both (``invalid_arguments``), at
  most 12,000 characters of Markdown (``msg_too_long``); the first content fixes the
  stream's mode and later calls in the other mode answer ``streaming_mode_mismatch``;
- chunk types ``markdown_text``, ``task_update`` (status pending | in_progress | complete |
  error), ``plan_update`` and ``blocks``; blocks (chunk or argument) only on ``stopStream``;
- Slack closes a stream ``stream_ttl`` seconds (~5 min) after it started on the fake clock
  (appends do not extend it): append/stop then answer ``message_not_in_streaming_state``,
  and ``stopped_by_user`` after the person pressed stop; ``chat.update`` on a live stream
  answers ``streaming_state_conflict`` (see ``slack_methods.chat_update``);
- ``channel_type_not_supported`` where the test said Slack refuses streaming.

The streamed message keeps ``text`` / ``markdown_text`` equal to the Markdown so far, and its
task updates in ``StreamState`` (``FakeSlack.tasks`` / ``task_updates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.slack_methods import (
    MAX_MARKDOWN_TEXT,
    Args,
    Handler,
    SlackFailure,
    channel_arg,
    check_blocks,
    checked_metadata,
    invalid_arguments,
    message_arg,
    require_member,
)

if TYPE_CHECKING:
    from tests.fakes.slack_server import FakeSlack

TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
DISPLAY_MODES = frozenset({"timeline", "plan"})
MAX_TASK_TITLE = 256


@dataclass
class StreamState:
    channel: str
    ts: str
    started_at: float  # fake clock
    recipient_user_id: str | None
    recipient_team_id: str | None
    task_display_mode: str | None
    mode: str | None = None  # "markdown_text" | "chunks", fixed by the first content
    state: str = "streaming"  # | "stopped" | "expired" | "stopped_by_user"
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> latest
    task_updates: list[dict[str, Any]] = field(default_factory=list)  # every update, in order
    plan_title: str | None = None
    chars: int = 0  # Markdown characters streamed so far


@dataclass
class _Content:
    mode: str | None  # None: the call carried no content
    markdown: str = ""
    chunks: list[dict[str, Any]] = field(default_factory=list)


def _content(args: Args, *, final: bool) -> _Content:
    """The validated content of one streaming call."""
    markdown, chunks = args.get("markdown_text"), args.get("chunks")
    if chunks == []:
        chunks = None  # slack_sdk's ChatStream.stop() sends an empty list
    if markdown is not None and chunks is not None:
        raise invalid_arguments("markdown_text and chunks cannot be used together")
    if args.get("blocks") is not None and not final:
        raise invalid_arguments("blocks can only be sent with chat.stopStream")
    if markdown is not None:
        text = str(markdown)
        if len(text) > MAX_MARKDOWN_TEXT:
            raise SlackFailure("msg_too_long")
        return _Content("markdown_text", markdown=text) if text else _Content(None)
    if chunks is None:
        return _Content(None)
    if isinstance(chunks, str) or not isinstance(chunks, list):
        raise invalid_arguments("chunks must be an array of chunk objects")
    content = _Content("chunks")
    for i, chunk in enumerate(chunks):
        content.chunks.append(_chunk(chunk, i, final=final))
    content.markdown = "".join(
        str(c["text"]) for c in content.chunks if c["type"] == "markdown_text"
    )
    if len(content.markdown) > MAX_MARKDOWN_TEXT:
        raise SlackFailure("msg_too_long")
    return content


def _chunk(chunk: Any, i: int, *, final: bool) -> dict[str, Any]:
    if not isinstance(chunk, dict):
        raise invalid_arguments(f"chunks[{i}] must be an object")
    kind = chunk.get("type")
    if kind == "markdown_text":
        if not isinstance(chunk.get("text"), str):
            raise invalid_arguments(f"chunks[{i}].text is required")
    elif kind == "task_update":
        for key in ("id", "title", "status"):
            if not isinstance(chunk.get(key), str) or not chunk[key]:
                raise invalid_arguments(f"chunks[{i}].{key} is required")
        if chunk["status"] not in TASK_STATUSES:
            raise invalid_arguments(f"chunks[{i}].status must be one of {sorted(TASK_STATUSES)}")
        if len(chunk["title"]) > MAX_TASK_TITLE:
            raise invalid_arguments(f"chunks[{i}].title must be at most {MAX_TASK_TITLE}")
    elif kind == "plan_update":
        title = chunk.get("title")
        if not isinstance(title, str) or not title or len(title) > MAX_TASK_TITLE:
            raise invalid_arguments(f"chunks[{i}].title is required (at most {MAX_TASK_TITLE})")
    elif kind == "blocks":
        if not final:
            raise invalid_arguments("blocks chunks can only be sent with chat.stopStream")
        check_blocks(chunk.get("blocks"))
    else:
        raise invalid_arguments(f"chunks[{i}].type {kind!r} is not a valid chunk type")
    return chunk


def _apply(
    fake: FakeSlack, stream: StreamState, message: dict[str, Any], content: _Content
) -> None:
    if content.mode is None:
        return
    if stream.mode is None:
        stream.mode = content.mode
    elif stream.mode != content.mode:
        raise SlackFailure("streaming_mode_mismatch")
    if stream.chars + len(content.markdown) > fake.max_stream_chars:
        raise SlackFailure("msg_too_long")
    stream.chars += len(content.markdown)
    markdown = (message.get("markdown_text") or "") + content.markdown
    message["markdown_text"] = markdown
    message["text"] = markdown
    for chunk in content.chunks:
        if chunk["type"] == "task_update":
            update = {
                k: chunk[k] for k in ("id", "title", "status", "details", "output") if k in chunk
            }
            stream.task_updates.append(dict(update))
            stream.tasks.setdefault(update["id"], {}).update(update)
        elif chunk["type"] == "plan_update":
            stream.plan_title = chunk["title"]
        elif chunk["type"] == "blocks":
            message["blocks"] = [*(message.get("blocks") or []), *chunk["blocks"]]


def _live(fake: FakeSlack, args: Args) -> tuple[str, dict[str, Any], StreamState]:
    channel = channel_arg(fake, args)
    message = message_arg(fake, channel, args.get("ts"))
    stream = fake.stream_state(channel, message["ts"])
    if stream is None or stream.state in ("stopped", "expired"):
        raise SlackFailure("message_not_in_streaming_state")
    if stream.state == "stopped_by_user":
        raise SlackFailure("stopped_by_user")
    return channel, message, stream


def chat_start_stream(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel = channel_arg(fake, args)
    require_member(fake, channel)
    if channel in fake.streaming_refused:
        raise SlackFailure("channel_type_not_supported")
    if not args.get("thread_ts"):
        raise SlackFailure("invalid_thread_ts")
    if not channel.startswith("D"):
        if not args.get("recipient_user_id"):
            raise SlackFailure("missing_recipient_user_id")
        if not args.get("recipient_team_id"):
            raise SlackFailure("missing_recipient_team_id")
    mode = args.get("task_display_mode")
    if mode is not None and mode not in DISPLAY_MODES:
        raise invalid_arguments(f"task_display_mode must be one of {sorted(DISPLAY_MODES)}")
    content = _content(args, final=False)
    stream = StreamState(
        channel=channel,
        ts="",
        started_at=fake.clock.now(),
        recipient_user_id=args.get("recipient_user_id"),
        recipient_team_id=args.get("recipient_team_id"),
        task_display_mode=mode,
    )
    probe: dict[str, Any] = {}
    _apply(fake, stream, probe, content)  # validates before anything is stored
    text = probe.get("markdown_text") or ""
    message = fake.bot_message(
        channel, text=text, markdown_text=text, thread_ts=str(args["thread_ts"])
    )
    if probe.get("blocks"):
        message["blocks"] = probe["blocks"]
    stream.ts = message["ts"]
    fake.streams[(channel, message["ts"])] = stream
    return {"channel": channel, "ts": message["ts"]}


def chat_append_stream(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel, message, stream = _live(fake, args)
    content = _content(args, final=False)
    if content.mode is None:
        raise SlackFailure("no_text")
    _apply(fake, stream, message, content)
    return {"channel": channel, "ts": message["ts"]}


def chat_stop_stream(fake: FakeSlack, args: Args) -> dict[str, Any]:
    channel, message, stream = _live(fake, args)
    content = _content(args, final=True)
    blocks = args.get("blocks")
    if blocks is not None:
        check_blocks(blocks)
    metadata = checked_metadata(args)
    _apply(fake, stream, message, content)
    if blocks:
        message["blocks"] = [*(message.get("blocks") or []), *blocks]
    if metadata is not None:
        message["metadata"] = metadata
    stream.state = "stopped"
    return {"channel": channel, "ts": message["ts"], "message": fake.public(message)}


METHODS: dict[str, Handler] = {
    "chat.startStream": chat_start_stream,
    "chat.appendStream": chat_append_stream,
    "chat.stopStream": chat_stop_stream,
}
