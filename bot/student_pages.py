"""What a student sees about their own work (the Home tab) and a channel's week
(``/tutor stats``): the store's rows made into ``bot.agent``'s views and messages.

Links on the Home tab are Slack's own permalinks (``chat.getPermalink``), remembered per
message (they never change), fetched a few at a time and within a short budget: a slow
Slack leaves some entries without a link rather than the tab unpublished.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.agent.home import MAX_ITEMS, HomeConversation, HomeQuiz, home_view
from bot.agent.stats import DEFAULT_DAYS, ChannelStats, stats_message
from bot.domain import QuizStatus
from bot.replies import Replies, SlackError
from store.base import Store

log = logging.getLogger(__name__)

PERMALINKS_KEPT = 5000
PERMALINK_BUDGET = 2.0  # seconds for all of one page's links
PERMALINK_CALLS = 4  # at once
SUBMITTED = (QuizStatus.SUBMITTED, QuizStatus.EXPIRED)  # expired: resent as a message


class StudentPages:
    def __init__(self, *, store: Store, replies: Replies, model: str, runtime: str) -> None:
        self._store = store
        self._replies = replies
        self._model = model
        self._runtime = runtime
        self._permalinks: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    async def home(self, team: str, user: str) -> dict[str, Any]:
        """The Home tab view of ``user``: their latest conversations and quizzes."""
        page = await self._store.student_page(team, user, limit=MAX_ITEMS)
        targets = [(c.key.channel, c.key.thread_ts) for c in page.conversations]
        targets += [(q.channel, q.message_ts) for q in page.quizzes if q.message_ts]
        links = await self._links(team, targets)
        conversations = [
            HomeConversation(
                title=c.title,
                permalink=links.get((c.key.channel, c.key.thread_ts)),
                when=c.last_activity,
            )
            for c in page.conversations
        ]
        quizzes = [
            HomeQuiz(
                title=q.title,
                when=q.created_at or datetime.now(UTC),
                questions=[question.text for question in q.questions],
                answers=q.answers,
                submitted=q.status in SUBMITTED,
                skipped=q.status is QuizStatus.SKIPPED,
                permalink=links.get((q.channel, q.message_ts)) if q.message_ts else None,
            )
            for q in page.quizzes
        ]
        return home_view(
            conversations=conversations, quizzes=quizzes, model=self._model, runtime=self._runtime
        )

    async def publish_home(self, team: str, user: str) -> None:
        """Publish ``user``'s Home tab (``views.publish``)."""
        await self._replies.publish_home(user, await self.home(team, user))

    async def channel_stats(
        self, team: str, channel: str, *, days: int = DEFAULT_DAYS
    ) -> tuple[str, list[dict[str, Any]]]:
        """(text, blocks) of the channel's last ``days`` days, for the person who asked."""
        since = datetime.now(UTC) - timedelta(days=days)
        activity = await self._store.channel_activity(team, channel, since)
        return stats_message(
            ChannelStats(
                channel=channel,
                questions_answered=activity.questions_answered,
                quizzes_posted=activity.quizzes_posted,
                quizzes_submitted=activity.quizzes_submitted,
                thumbs_up=activity.thumbs_up,
                thumbs_down=activity.thumbs_down,
                failed_answers=activity.failed_answers,
                days=days,
            )
        )

    async def _links(
        self, team: str, targets: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        missing = []
        for channel, ts in dict.fromkeys(targets):
            link = self._permalinks.get((team, channel, ts))
            if link is not None:
                found[(channel, ts)] = link
            else:
                missing.append((channel, ts))
        if not missing:
            return found
        calls = asyncio.Semaphore(PERMALINK_CALLS)

        async def fetch(channel: str, ts: str) -> None:
            async with calls:
                try:
                    link = await self._replies.permalink(channel, ts)
                except SlackError as exc:
                    log.info("no permalink for %s in %s: %s", ts, channel, exc.error)
                    return
            if link is not None:
                found[(channel, ts)] = link
                self._permalinks[(team, channel, ts)] = link
                while len(self._permalinks) > PERMALINKS_KEPT:
                    self._permalinks.popitem(last=False)

        tasks = [asyncio.ensure_future(fetch(channel, ts)) for channel, ts in missing]
        _, pending = await asyncio.wait(tasks, timeout=PERMALINK_BUDGET)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.info("Home tab: %s links left out (Slack slow)", len(pending))
        return found
