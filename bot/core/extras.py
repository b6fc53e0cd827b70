"""What follows an answer: the files the code made (plots first: people look before they
read), then a compact "Show work" reply with the code and its output.

Each is posted once. Posted parts are recorded in the answer's ``Progress`` as they go, and
replies carry the turn in their message metadata, so a turn resumed after a crash (or a
store that failed right after posting) looks at the thread before posting again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.domain import ThreadKey, Turn
from bot.rendering import render_work
from bot.replies import SlackError
from bot.runtime.base import RunResult, Runtime, RuntimeError_
from bot.slack.answer import Progress
from bot.slack.surface import Surface

log = logging.getLogger(__name__)

METADATA_EVENT = "tutorbot_reply"
FAILURE_PART = "failure"  # the notice telling the student a turn failed


def reply_metadata(turn: Turn, part: str) -> dict[str, object]:
    return {"event_type": METADATA_EVENT, "event_payload": {"turn": turn.id, "part": part}}


async def already_posted(replies: Surface, key: ThreadKey, turn: Turn) -> set[str]:
    """Parts of this turn Slack already shows (for a turn worked before)."""
    try:
        mine = await replies.bot_replies_after(key.channel, key.thread_ts, turn.message_ts)
    except SlackError as exc:
        log.info("could not look for earlier replies of turn %s: %s", turn.id, exc.error)
        return set()
    parts = set()
    for message in mine:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == METADATA_EVENT and payload.get("turn") == turn.id:
            parts.add(str(payload.get("part")))
    return parts


async def post_extras(
    replies: Surface,
    runtime: Runtime,
    key: ThreadKey,
    turn: Turn,
    result: RunResult,
    progress: Progress,
    *,
    on_posted: Callable[[], Awaitable[None]],
) -> None:
    """Post the run's files and its work reply, skipping what was posted before."""
    work = render_work(result.steps)
    if not result.files and not work:
        return
    done = set(progress.posted)
    if turn.attempts > 1 and work:
        done |= await already_posted(replies, key, turn)
    for generated in result.files:
        part = f"file:{generated.file_id}"
        if part in done:
            continue
        try:
            content = await runtime.download_file(generated)
            await replies.upload(key.channel, key.thread_ts, generated.filename, content)
        except (RuntimeError_, SlackError) as exc:
            log.warning("could not share generated file %s: %s", generated.file_id, exc)
            await replies.post(
                key.channel,
                f"_I made a file ({generated.filename}) but couldn't share it._",
                thread_ts=key.thread_ts,
            )
        progress.posted.append(part)
        await on_posted()
    for index, message in enumerate(work):
        part = f"work:{index}"
        if part in done:
            continue
        await replies.post(
            key.channel,
            message.text,
            thread_ts=key.thread_ts,
            blocks=message.blocks,
            metadata=reply_metadata(turn, part),
        )
        progress.posted.append(part)
        await on_posted()
