"""The Messages tab and the legacy assistant container, around the conversation itself: the
greeting and suggested prompts, the channel the student is viewing, and DM titles.

Listeners (``handlers/agent.py``) call these with parsed events. What must be recorded
before Slack is acknowledged (the student greeted, the viewing context) is written here,
inline (a database failure makes the delivery a 5xx, and Slack sends it again); the Slack
calls that follow run as owned background tasks, best effort: a greeting or a title that
Slack refuses costs no answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from bot.agent.surfaces import (
    GREETING_METADATA,
    PROMPTS_TITLE,
    dm_title,
    greeting_text,
    suggested_prompts_payload,
)
from bot.replies import Replies, SlackError
from bot.tasks import BackgroundTasks
from store.base import Store, ViewedChannel

log = logging.getLogger(__name__)

WHOLE_DM = ""  # a viewing context for every thread of a DM (store.agent.WHOLE_DM)


class MessagesTab:
    def __init__(self, *, store: Store, replies: Replies, tasks: BackgroundTasks) -> None:
        self._store = store
        self._replies = replies
        self._tasks = tasks

    def _later(self, step: Awaitable[object], name: str) -> None:
        async def run() -> None:
            await step

        self._tasks.spawn(run(), name=name)

    async def opened(
        self, *, team: str, user: str, dm_channel: str, viewing: ViewedChannel | None
    ) -> None:
        """The student opened the Messages tab: greeted the first time only (with the
        suggested prompts), and what they are viewing kept for the DM's next answers."""
        if viewing is not None:
            await self.viewing(team=team, channel=dm_channel, thread_ts=None, viewing=viewing)
        if await self._store.greet_once(team, user):
            self._later(self._greet_once(team, user, dm_channel), f"greet-{user}")

    async def thread_started(
        self,
        *,
        team: str,
        user: str,
        channel: str,
        thread_ts: str,
        viewing: ViewedChannel | None,
    ) -> None:
        """Legacy assistant container: a new side-panel thread gets the greeting and the
        prompts in it (each such thread is a new conversation)."""
        if viewing is not None:
            await self.viewing(team=team, channel=channel, thread_ts=thread_ts, viewing=viewing)
        self._later(self._greet(user, channel, thread_ts=thread_ts), f"greet-{thread_ts}")

    async def viewing(
        self, *, team: str, channel: str, thread_ts: str | None, viewing: ViewedChannel | None
    ) -> None:
        """The student now views ``viewing`` (None: nothing the tutor may name). Kept for
        one thread, or for the whole DM when Slack names no thread."""
        if viewing is None:
            return
        where = thread_ts or WHOLE_DM
        await self._store.set_viewing_context(team, channel, where, viewing)
        if viewing.name is None:  # Slack sends ids: look the name up, then keep it too
            self._later(
                self._name_context(team, channel, where, viewing.channel),
                f"context-name-{channel}",
            )

    def first_question(self, *, channel: str, ts: str, text: str) -> None:
        """A DM's first message starts a conversation: it gets a title from its words."""
        self._later(self._replies.set_title(channel, ts, dm_title(text)), f"title-{ts}")

    async def _greet_once(self, team: str, user: str, channel: str) -> None:
        """The Messages tab's greeting; if it does not reach the student, their next open
        greets them again (the greeted mark was written before the ack)."""
        if not await self._greet(user, channel, thread_ts=None):
            await self._store.forget_greeting(team, user)

    async def _greet(self, user: str, channel: str, *, thread_ts: str | None) -> bool:
        """The greeting and the suggested prompts; False when the greeting failed."""
        greeted = True
        try:
            await self._replies.post(
                channel, greeting_text(user), thread_ts=thread_ts, metadata=GREETING_METADATA
            )
        except SlackError as exc:
            log.warning("could not greet %s in %s: %s", user, channel, exc.error)
            greeted = False
        await self._replies.set_suggested_prompts(
            channel, suggested_prompts_payload(), thread_ts=thread_ts, title=PROMPTS_TITLE
        )
        return greeted

    async def _name_context(self, team: str, channel: str, where: str, viewed: str) -> None:
        name = await self._replies.channel_name(viewed)
        if name is not None:
            await self._store.name_viewing_context(
                team, channel, where, ViewedChannel(viewed, name)
            )
