"""The one line in a thread that says what the bot is doing, replaced by what it did.

A turn posts "Thinking…" at once, edits it as the run's steps change ("Writing and running
code…"), and finally turns it into the answer (or a note, or an error), so the thread shows
one message per reply instead of a trail of status updates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from bot.domain import ThreadKey
from bot.rendering import progress_text
from bot.replies import Replies, SlackError
from store.base import Store

log = logging.getLogger(__name__)

# chat.update is rate limited (Tier 3): at most one progress edit per interval.
PROGRESS_MIN_INTERVAL = 1.5


class StatusLine:
    def __init__(
        self, replies: Replies, store: Store, key: ThreadKey, turn_id: int, ts: str | None
    ) -> None:
        self._replies = replies
        self._store = store
        self._key = key
        self._turn_id = turn_id
        self.ts = ts  # the line's message, once posted (kept in the store for resumes)
        self._label: str | None = None
        self._shown_at = 0.0
        # Posting the line failed (it may still have gone through): don't add another.
        self._failed = False

    async def show(self, label: str, *, force: bool = False) -> None:
        """Show ``label``; unforced updates are throttled and skipped when unchanged.

        Never raises: progress is a courtesy, and without it the answer is posted fresh.
        """
        now = time.monotonic()
        if not force and (label == self._label or now - self._shown_at < PROGRESS_MIN_INTERVAL):
            return
        if self.ts is None and self._failed:
            return
        self._label, self._shown_at = label, now
        message = progress_text(label)
        try:
            if self.ts is None:
                self.ts = await self._replies.post(
                    self._key.channel,
                    message.text,
                    thread_ts=self._key.thread_ts,
                    blocks=message.blocks,
                )
                await self._store.update_turn(self._turn_id, status_message_ts=self.ts)
            else:
                # Unforced edits do not wait out rate limits: better skipped than late.
                await self._replies.update(
                    self._key.channel,
                    self.ts,
                    message.text,
                    blocks=message.blocks,
                    best_effort=not force,
                )
        except SlackError as exc:
            log.info("progress update failed: %s", exc)
            if self.ts is None:
                self._failed = True

    async def replace(self, text: str, *, blocks: Sequence[dict[str, Any]] | None = None) -> None:
        """Turn the line into a message (the answer, a note); a later ``show`` starts anew."""
        await self._replies.replace_or_post(
            self._key.channel, self._key.thread_ts, self.ts, text, blocks=blocks
        )
        self.ts = None
        self._label = None

    async def clear(self) -> None:
        """Remove the line (nothing replaces it: e.g. a quiz was posted instead)."""
        if self.ts is not None:
            await self._replies.delete(self._key.channel, self.ts)
            self.ts = None
