"""Pure parsers for the agent-app events: the Messages and Home tabs, the student's context,
Stop, and the legacy assistant container. No I/O; table-tested.

Each returns a small frozen dataclass, or None for a payload that is not one the bot can act
on (another event type, a missing or malformed id). Shapes (docs.slack.dev event pages,
@slack/types for fields the examples omit):

- ``app_home_opened``: ``{type, user, channel, tab: "home"|"messages", event_ts, view?,
  context?}``; ``context`` only for apps subscribed to ``app_context_changed``.
- ``app_context_changed``: ``{type, user, channel, context: {entities: [{type, value,
  team_id?}…]} | {}, event_ts}``; entities are ordered by relevance, types
  ``slack#/types/channel_id`` (value: the id), ``…/message_context`` (value: {channel_id,
  message_ts}), ``…/canvas_id``, ``…/list_id``. The docs' example omits ``user`` and
  ``channel``; @slack/types has both, and without them the bot cannot attribute the event.
- ``agent_session_stopped``: ``{type, user, channel, thread_ts, streaming_message_ts: [ts…],
  event_ts}``.
- ``assistant_thread_started`` / ``assistant_thread_context_changed`` (legacy container):
  ``{type, assistant_thread: {user_id, channel_id, thread_ts, context: {channel_id,
  team_id, enterprise_id}}, event_ts}``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHANNEL_ENTITY = "slack#/types/channel_id"
MESSAGE_ENTITY = "slack#/types/message_context"

_ID = re.compile(r"[A-Z][A-Z0-9]+")  # Slack ids: U…/W… users, C…/G…/D… conversations, T… teams
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")


class HomeTab(enum.StrEnum):
    HOME = "home"
    MESSAGES = "messages"


@dataclass(frozen=True, slots=True)
class ViewingContext:
    """What the student is looking at in Slack: a channel (and maybe a message in it)."""

    channel: str
    team: str | None = None
    message_ts: str | None = None
    # Slack sends ids only; a name appears here only if a payload ever carries one.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AppHomeOpened:
    user: str
    channel: str  # the DM between the student and the app
    tab: HomeTab
    context: ViewingContext | None = None


@dataclass(frozen=True, slots=True)
class AppContextChanged:
    user: str
    channel: str  # the DM with the app the student has open
    context: ViewingContext | None  # None: nothing in view (``context: {}``)
    thread_ts: str | None = None  # not in the documented shape; kept if Slack sends it


@dataclass(frozen=True, slots=True)
class SessionStopped:
    user: str
    channel: str
    thread_ts: str
    streaming_message_ts: tuple[str, ...] = ()


class AssistantThreadEvent(enum.StrEnum):
    STARTED = "assistant_thread_started"
    CONTEXT_CHANGED = "assistant_thread_context_changed"


@dataclass(frozen=True, slots=True)
class AssistantThread:
    """A legacy container thread opened (or its context changed)."""

    kind: AssistantThreadEvent
    user: str
    channel: str
    thread_ts: str
    context: ViewingContext | None


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _ts(value: Any) -> str | None:
    return value if isinstance(value, str) and _TS.fullmatch(value) else None


def _entity_context(entity: Mapping[str, Any]) -> ViewingContext | None:
    team = _id(entity.get("team_id"))
    name = entity.get("name")
    name = name.strip() if isinstance(name, str) and name.strip() else None
    if entity.get("type") == CHANNEL_ENTITY:
        channel = _id(entity.get("value"))
        return ViewingContext(channel, team, name=name) if channel else None
    if entity.get("type") == MESSAGE_ENTITY and isinstance(entity.get("value"), Mapping):
        value = entity["value"]
        channel = _id(value.get("channel_id"))
        if channel:
            return ViewingContext(channel, team, message_ts=_ts(value.get("message_ts")))
    return None


def parse_viewing_context(context: Any) -> ViewingContext | None:
    """The most relevant channel in an agent ``context`` (``{entities: […]}``) or a legacy
    one (``{channel_id, team_id, enterprise_id}``); None if there is none (canvases and
    lists are not channels)."""
    if not isinstance(context, Mapping):
        return None
    entities = context.get("entities")
    if isinstance(entities, list):
        for entity in entities:  # ordered by relevance: the first channel wins
            found = _entity_context(entity) if isinstance(entity, Mapping) else None
            if found is not None:
                return found
        return None
    channel = _id(context.get("channel_id"))
    return ViewingContext(channel, _id(context.get("team_id"))) if channel else None


def parse_app_home_opened(event: Mapping[str, Any]) -> AppHomeOpened | None:
    if event.get("type") != "app_home_opened":
        return None
    user, channel = _id(event.get("user")), _id(event.get("channel"))
    tab = event.get("tab")
    if user is None or channel is None or tab not in (HomeTab.HOME, HomeTab.MESSAGES):
        return None
    return AppHomeOpened(user, channel, HomeTab(tab), parse_viewing_context(event.get("context")))


def parse_app_context_changed(event: Mapping[str, Any]) -> AppContextChanged | None:
    if event.get("type") != "app_context_changed":
        return None
    user, channel = _id(event.get("user")), _id(event.get("channel"))
    if user is None or channel is None:
        return None
    return AppContextChanged(
        user,
        channel,
        parse_viewing_context(event.get("context")),
        thread_ts=_ts(event.get("thread_ts")),
    )


def parse_agent_session_stopped(event: Mapping[str, Any]) -> SessionStopped | None:
    if event.get("type") != "agent_session_stopped":
        return None
    user, channel = _id(event.get("user")), _id(event.get("channel"))
    thread_ts = _ts(event.get("thread_ts"))
    if user is None or channel is None or thread_ts is None:
        return None
    streams = event.get("streaming_message_ts")
    stopped = tuple(ts for ts in (streams if isinstance(streams, list) else []) if _ts(ts))
    return SessionStopped(user, channel, thread_ts, stopped)


def parse_assistant_thread_event(event: Mapping[str, Any]) -> AssistantThread | None:
    """``assistant_thread_started`` or ``assistant_thread_context_changed`` (legacy)."""
    kind_name = event.get("type")
    if kind_name not in (AssistantThreadEvent.STARTED, AssistantThreadEvent.CONTEXT_CHANGED):
        return None
    kind = AssistantThreadEvent(kind_name)
    thread = event.get("assistant_thread")
    if not isinstance(thread, Mapping):
        return None
    user, channel = _id(thread.get("user_id")), _id(thread.get("channel_id"))
    thread_ts = _ts(thread.get("thread_ts"))
    if user is None or channel is None or thread_ts is None:
        return None
    return AssistantThread(
        kind, user, channel, thread_ts, parse_viewing_context(thread.get("context"))
    )
