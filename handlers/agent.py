"""Agent-app events: the Messages tab opened, the student's viewing context, Stop, and the
legacy assistant container. The Home tab has its own listener (``handlers/home.py``).

Each listener returns quickly: what must be recorded is written before Slack is answered,
Slack calls run in owned background tasks (``bot.agent.messages_tab``). A payload without
the ids the bot needs is acknowledged and logged, never retried.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from bot.agent.messages_tab import MessagesTab
from bot.conversation import Conversation
from bot.domain import ThreadKey
from handlers.agent_parsing import (
    AssistantThreadEvent,
    HomeTab,
    ViewingContext,
    parse_agent_session_stopped,
    parse_app_context_changed,
    parse_app_home_opened,
    parse_assistant_thread_event,
)
from handlers.parsing import team_of
from store.base import ViewedChannel

log = logging.getLogger(__name__)


def _viewed(context: ViewingContext | None) -> ViewedChannel | None:
    return ViewedChannel(context.channel, context.name) if context is not None else None


async def _messages_tab(event: dict[str, Any]) -> bool:
    return event.get("tab") == HomeTab.MESSAGES


def register(app: AsyncApp, conversation: Conversation, tab: MessagesTab) -> None:
    @app.event("app_home_opened", matchers=[_messages_tab])
    async def on_messages_tab(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        opened = parse_app_home_opened(event)
        if opened is None:
            log.info("app_home_opened without a user or channel; ignored")
            return
        await tab.opened(
            team=team_of(body, event, context.team_id),
            user=opened.user,
            dm_channel=opened.channel,
            viewing=_viewed(opened.context),
        )

    @app.event("app_context_changed")
    async def on_context_changed(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        changed = parse_app_context_changed(event)
        if changed is None:
            log.info("app_context_changed without a user or channel; ignored")
            return
        await tab.viewing(
            team=team_of(body, event, context.team_id),
            channel=changed.channel,
            thread_ts=changed.thread_ts,
            viewing=_viewed(changed.context),
        )

    @app.event("agent_session_stopped")
    async def on_stopped(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        stopped = parse_agent_session_stopped(event)
        if stopped is None:
            log.info("agent_session_stopped without a channel or thread; ignored")
            return
        team = team_of(body, event, context.team_id)
        await conversation.stop(ThreadKey(team, stopped.channel, stopped.thread_ts))

    async def on_assistant_thread(
        event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        thread = parse_assistant_thread_event(event)
        if thread is None:
            log.info("%s without a user, channel or thread; ignored", event.get("type"))
            return
        team = team_of(body, event, context.team_id)
        if thread.kind is AssistantThreadEvent.STARTED:
            await tab.thread_started(
                team=team,
                user=thread.user,
                channel=thread.channel,
                thread_ts=thread.thread_ts,
                viewing=_viewed(thread.context),
            )
        else:
            await tab.viewing(
                team=team,
                channel=thread.channel,
                thread_ts=thread.thread_ts,
                viewing=_viewed(thread.context),
            )

    app.event("assistant_thread_started")(on_assistant_thread)
    app.event("assistant_thread_context_changed")(on_assistant_thread)
