"""The 👍 / 👎 buttons under every answer. The click is acked at once; the vote is then
recorded (``bot.votes``), thanked for and traced in the background.

Register before ``handlers.quiz_actions``, whose catch-all action listener would take it.
A click the bot cannot read gets its 2xx too (Slack shows no error and sends nothing
again) and one log line saying what was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.agent.feedback import FEEDBACK_ACTION_ID, FeedbackPayloadError, parse_feedback_click
from bot.tasks import BackgroundTasks
from bot.votes import AnswerFeedback

log = logging.getLogger(__name__)


def register(app: AsyncApp, feedback: AnswerFeedback, tasks: BackgroundTasks) -> None:
    @app.action(FEEDBACK_ACTION_ID)
    async def on_feedback(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        user = (body.get("user") or {}).get("id") if isinstance(body.get("user"), dict) else None
        try:
            click = parse_feedback_click(body)
        except FeedbackPayloadError as exc:
            log.warning("ignoring a feedback click from %s: %s", user or "(no user)", exc)
            return
        team = (body.get("team") or {}).get("id") if isinstance(body.get("team"), dict) else None
        team = team or context.team_id or "T0"
        tasks.spawn(feedback.take(click, team=str(team)), name="feedback-vote")
