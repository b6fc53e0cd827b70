"""Many workspaces: which one a Slack call speaks for, and with which bot token.

``current_team`` is the workspace of the work at hand, like Bolt's request context: a Bolt
middleware sets it for every request (``handlers.workspaces``), the worker for every turn
(``TurnRunner.process``: the turn's thread key has its team), and every task spawned from
there inherits it (asyncio copies the context into a new task). ``bot.replies.Replies``
reads it to pick the token of each call, so the core never passes a team around.

``WorkspaceTokens`` looks the workspace's bot up in the installation store and keeps it for
a minute: a turn makes a dozen calls, and an uninstall in this process forgets it at once
(one in another process is noticed within the minute; Slack refuses the revoked token
meanwhile). A workspace without an installation is never cached, so a new install is seen
by every process right away.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from store.slack_oauth import InstalledBot

TOKEN_TTL = 60.0

current_team: ContextVar[str | None] = ContextVar("current_team", default=None)


class WorkspaceTokens:
    """team id -> the bot installed there (token, user id, bot id), cached briefly."""

    def __init__(
        self,
        find: Callable[[str], Awaitable[InstalledBot | None]],
        *,
        ttl: float = TOKEN_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find = find
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, InstalledBot]] = {}

    async def bot(self, team: str) -> InstalledBot | None:
        """The workspace's bot, or None when the app is not installed there."""
        cached = self._cache.get(team)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        bot = await self._find(team)
        if bot is None:
            self._cache.pop(team, None)
        else:
            self._cache[team] = (self._clock() + self._ttl, bot)
        return bot

    def forget(self, team: str) -> None:
        """The workspace's installation changed (installed again, uninstalled, revoked)."""
        self._cache.pop(team, None)
