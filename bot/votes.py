"""👍 / 👎 on an answer: recorded, thanked for, and added to the turn's trace.

A click is acknowledged to Slack at once (``handlers.feedback``); the vote is then
recorded here, retried while the database is unreachable, so a click during an outage is
not lost (within this process's life). Clicks of one person on one answer are taken in
the order they came, so the last one wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.agent.feedback import FeedbackClick, Vote, thanks_text
from bot.domain import TurnKind
from bot.replies import Replies
from bot.telemetry.base import Telemetry
from store.base import RecordedVote, Store, StoreError

log = logging.getLogger(__name__)

# Seconds between attempts while the database is unreachable (about 5 minutes in all).
RETRY_DELAYS: Sequence[float] = (0.5, 1, 2, 4, 8, 15, 30, 60, 60, 60, 60)


class AnswerFeedback:
    def __init__(
        self,
        *,
        store: Store,
        replies: Replies,
        telemetry: Telemetry,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self._store = store
        self._replies = replies
        self._telemetry = telemetry
        self._retry_delays = retry_delays
        self._order: dict[tuple[int, str], asyncio.Lock] = {}

    async def take(self, click: FeedbackClick, *, team: str) -> RecordedVote | None:
        """Record the vote; thank the voter and trace it when it changed anything (a double
        click does not). None when the channel has no such answer."""
        key = (click.turn_id, click.user)
        lock = self._order.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                recorded = await self._record(click, team)
        finally:
            if not lock.locked() and self._order.get(key) is lock:
                del self._order[key]
        if recorded is None:
            log.warning(
                "feedback from %s on turn %s, which is not an answer in %s/%s; ignored",
                click.user,
                click.turn_id,
                team,
                click.channel,
            )
            return None
        if not recorded.changed:
            log.info("feedback from %s on turn %s: unchanged", click.user, click.turn_id)
            return recorded
        log.info(
            "feedback from %s on turn %s: %s%s",
            click.user,
            click.turn_id,
            click.vote.value,
            "" if recorded.previous is None else " (changed)",
        )
        trace_turn = recorded.turn_id
        if recorded.kind is TurnKind.QUIZ_ANSWERS and recorded.parent_turn_id is not None:
            trace_turn = recorded.parent_turn_id  # a quiz's answers continue its trace
        self._telemetry.record_feedback(
            turn_id=recorded.turn_id,
            trace_turn_id=trace_turn,
            helpful=click.vote is Vote.UP,
            user=click.user,
            team=team,
            channel=click.channel,
        )
        await self._replies.ephemeral(
            click.channel, click.user, thanks_text(click.vote), thread_ts=click.thread_ts
        )
        return recorded

    async def _record(self, click: FeedbackClick, team: str) -> RecordedVote | None:
        attempt = 0
        while True:
            try:
                return await self._store.record_vote(
                    team, click.channel, click.turn_id, click.user, helpful=click.vote is Vote.UP
                )
            except StoreError as exc:
                if attempt >= len(self._retry_delays):
                    log.error(
                        "feedback from %s on turn %s could not be recorded: %s",
                        click.user,
                        click.turn_id,
                        exc,
                    )
                    raise
                delay = self._retry_delays[attempt]
                attempt += 1
                log.warning(
                    "feedback from %s on turn %s not recorded yet (%s); trying again in %gs",
                    click.user,
                    click.turn_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
