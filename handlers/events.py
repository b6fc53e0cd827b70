"""Events API listeners: mentions, thread follow-ups, DMs.

Bolt answers Slack after these listeners return (``process_before_response``): a message
is acknowledged only once it is recorded; a database that cannot record it makes the
answer a 5xx (``StoreError`` -> the app's error handler), and Slack delivers it again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.agent.messages_tab import MessagesTab
from bot.conversation import Conversation
from handlers.parsing import parse_message_event, team_of

log = logging.getLogger(__name__)


def register(app: AsyncApp, conversation: Conversation, tab: MessagesTab) -> None:
    async def on_message_like(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        message = parse_message_event(
            event, team=team_of(body, event, context.team_id), bot_user_id=context.bot_user_id
        )
        if message is None:
            return
        turn = await conversation.receive_message(message)
        if turn is not None and message.thread_ts is None and message.channel.startswith("D"):
            # A DM's first message (no thread yet): the conversation it starts gets a title.
            tab.first_question(channel=message.channel, ts=message.ts, text=message.text)

    app.event("app_mention")(on_message_like)
    app.event("message")(on_message_like)

    # Every other event type the app may be subscribed to (or Slack may send) gets its 2xx
    # here; unmatched events would get 404 and be retried by Slack.
    @app.event(re.compile(".*"))
    async def ignore_other_events(event: dict[str, Any]) -> None:
        log.debug("ignoring event %s", event.get("type"))
