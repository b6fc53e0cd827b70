"""The "is thinking…" indicator under a thread while the tutor works on a turn.

``assistant.threads.setStatus`` works in channel threads and DMs; Slack clears it when the
bot replies in the thread, when it is set empty, or two minutes after it was set. So it is
set once per turn, set again before it would expire while nothing has been said yet (a long
tool phase), and cleared explicitly only on paths where nothing is posted (a stopped answer).
An app without ``assistant:write`` (an old manifest) simply shows no indicator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from bot.domain import ThreadKey
from bot.replies import SlackError
from bot.slack.budget import SlackBudget
from bot.slack.surface import Surface

log = logging.getLogger(__name__)

REFRESH_EVERY = 90.0  # before Slack's 2-minute expiry
LOADING_MESSAGES = (
    "Thinking it through…",
    "Working out the steps…",
    "Checking my reasoning…",
)
# The app is gone from the workspace (uninstalled, its token revoked; bot.replies.NotInstalled).
UNINSTALLED = frozenset({"not_installed", "token_revoked"})
# The bot cannot speak in this conversation at all: the turn ends before any model call.
NOT_HERE = frozenset({"not_in_channel", "channel_not_found", "is_archived"}) | UNINSTALLED
_UNAVAILABLE = frozenset(
    {"missing_scope", "not_allowed_token_type", "unknown_method", "not_agent_app", "not_allowed"}
)


class NotInChannel(Exception):
    """Slack says the bot is not in the conversation (``not_in_channel`` …)."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(f"{channel}: {error}")
        self.channel = channel
        self.error = error


class StatusIndicators:
    """Shared state: whether the workspace's app can set statuses at all."""

    def __init__(self, replies: Surface, budget: SlackBudget) -> None:
        self.replies = replies
        self.budget = budget
        self.disabled = False

    def for_turn(self, key: ThreadKey) -> StatusIndicator:
        return StatusIndicator(self, key)


class StatusIndicator:
    def __init__(self, shared: StatusIndicators, key: ThreadKey) -> None:
        self._shared = shared
        self._key = key
        self._label: str | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.shown = False

    async def show(self, label: str, loading: Sequence[str] = LOADING_MESSAGES) -> None:
        """Show (or change) the indicator; kept alive until ``replied`` or ``clear``.

        Raises ``NotInChannel`` when Slack says the bot cannot speak there."""
        if self._label == label and self.shown:
            return
        self._label = label
        if await self._set(label, loading):
            self.shown = True
            if self._refresher is None:
                self._refresher = asyncio.create_task(
                    self._keep_alive(loading), name=f"status-{self._key.thread_ts}"
                )

    def replied(self) -> None:
        """The bot said something in the thread, which clears the indicator in Slack."""
        self.shown = False
        self._label = None
        self._stop_refresher()

    async def clear(self) -> None:
        """Remove the indicator (nothing was posted that would clear it)."""
        self._stop_refresher()
        if self.shown:
            self.shown = False
            self._label = None
            await self._set("", ())

    async def aclose(self) -> None:
        """End of the turn: stop keeping it alive (Slack clears it on its own)."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    def _stop_refresher(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    async def _keep_alive(self, loading: Sequence[str]) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            if self._label is not None:
                await self._set(self._label, loading)

    async def _set(self, status: str, loading: Sequence[str]) -> bool:
        shared = self._shared
        if shared.disabled:
            return False
        if status and not shared.budget.take(self._key.team, "assistant.threads.setStatus"):
            return False
        try:
            await shared.replies.set_status(
                self._key.channel, self._key.thread_ts, status, loading_messages=loading or None
            )
        except SlackError as exc:
            if exc.error in NOT_HERE:
                raise NotInChannel(self._key.channel, exc.error) from exc
            if exc.error in _UNAVAILABLE:
                log.warning(
                    "no status indicator: Slack says %s (the app needs assistant:write)",
                    exc.error,
                )
                shared.disabled = True
            elif exc.error == "ratelimited":
                shared.budget.rate_limited(
                    self._key.team, "assistant.threads.setStatus", exc.retry_after or 1.0
                )
            else:
                log.info("could not set the status in %s: %s", self._key, exc.error)
            return False
        return True
