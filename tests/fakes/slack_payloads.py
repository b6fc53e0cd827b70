"""What Slack sends to an app: payload builders with real shapes, and a signing sender.

The builders are pure (no I/O) and return plain dicts shaped like the payloads
Slack delivers (Events API ``event_callback`` bodies, slash-command forms,
``block_actions`` and ``view_submission`` interactions). :class:`SlackSender`
posts them to a bot's ``/slack/events`` endpoint signed like Slack does, so
Bolt's request verification runs for real.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

API_APP_ID = "A1"
VERIFICATION_TOKEN = "verification-token"
TEAM_DOMAIN = "tutorbot-test"

# ---------------------------------------------------------------------------
# identifiers


_ts_lock = threading.Lock()
_last_ts_us = 0


def next_ts() -> str:
    """A unique, increasing Slack ``ts`` ("1700000000.000123") based on the wall clock.

    Shared by the payload builders and the fake Web API, so user messages built
    here and messages the bot posts to the fake sort together.
    """
    global _last_ts_us
    with _ts_lock:
        now_us = time.time_ns() // 1000
        _last_ts_us = max(now_us, _last_ts_us + 1)
        value = _last_ts_us
    return f"{value // 1_000_000}.{value % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for a Slack ``ts`` (string comparison breaks across digit counts)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def new_id(prefix: str, length: int = 10) -> str:
    """A Slack-style id: prefix + upper-case alphanumerics ("F07ABC…", "Ev07…")."""
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


_trigger_counter = itertools.count(1)


def new_trigger_id() -> str:
    """A trigger id in Slack's format ("12345.98765.abcd…"); the fake does not know it."""
    return f"{next(_trigger_counter)}.{int(time.time())}.{secrets.token_hex(16)}"


# ---------------------------------------------------------------------------
# message events

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def rich_text_blocks(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack attaches to a typed message, mentions as ``user`` elements."""
    elements: list[dict[str, Any]] = []
    pos = 0
    for m in _MENTION.finditer(text):
        if m.start() > pos:
            elements.append({"type": "text", "text": text[pos : m.start()]})
        elements.append({"type": "user", "user_id": m.group(1)})
        pos = m.end()
    if pos < len(text):
        elements.append({"type": "text", "text": text[pos:]})
    return [
        {
            "type": "rich_text",
            "block_id": new_id("", 5).lower(),
            "elements": [{"type": "rich_text_section", "elements": elements}],
        }
    ]


def _channel_type(channel: str) -> str:
    if channel.startswith("D"):
        return "im"
    if channel.startswith("G"):
        return "group"
    return "channel"


def app_mention(
    *,
    text: str,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T1",
    bot_user_id: str = "UBOT",
    parent_user_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``<@bot_user_id>`` is prefixed to ``text`` unless present."""
    if f"<@{bot_user_id}>" not in text:
        text = f"<@{bot_user_id}> {text}"
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "user": user,
        "type": "app_mention",
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "text": text,
        "team": team,
        "blocks": rich_text_blocks(text),
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts is not None and thread_ts != ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = parent_user_id or user
    if files:
        event["files"] = files
        event["upload"] = False
        event["display_as_bot"] = False
    return event


def message(
    *,
    text: str,
    user: str | None = "U1",
    channel: str = "C1",
    channel_type: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    subtype: str | None = None,
    bot_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
    team: str = "T1",
    parent_user_id: str | None = None,
) -> dict[str, Any]:
    """A ``message`` event (channel, DM or thread reply).

    ``channel_type`` defaults from the id ("D…" -> ``im``, "G…" -> ``group``,
    else ``channel``). ``files`` makes it a ``file_share`` message unless a
    subtype is given. ``bot_id`` makes it another app's post (with
    ``bot_profile``); pass ``subtype="bot_message"`` and ``user=None`` for a
    legacy bot post.
    """
    ts = ts or next_ts()
    event: dict[str, Any] = {"type": "message", "ts": ts, "text": text}
    if files and subtype is None:
        subtype = "file_share"
    if subtype is not None:
        event["subtype"] = subtype
    if user is not None:
        event["user"] = user
    if bot_id is not None:
        event["bot_id"] = bot_id
        event["app_id"] = "A" + bot_id[1:]
        event["bot_profile"] = {
            "id": bot_id,
            "app_id": "A" + bot_id[1:],
            "name": "another-bot",
            "deleted": False,
            "team_id": team,
        }
    else:
        event["client_msg_id"] = str(uuid.uuid4())
        event["blocks"] = rich_text_blocks(text)
    event["team"] = team
    if thread_ts is not None and thread_ts != ts:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = parent_user_id or user or ""
    if files:
        event["files"] = files
        event["upload"] = False
        event["display_as_bot"] = False
    event["channel"] = channel
    event["event_ts"] = ts
    event["channel_type"] = channel_type or _channel_type(channel)
    return event


def message_changed(
    *, channel: str, message: dict[str, Any], previous: dict[str, Any], team: str = "T1"
) -> dict[str, Any]:
    """A ``message_changed`` event (hidden, no ``user`` at the top level)."""
    ts = next_ts()
    return {
        "type": "message",
        "subtype": "message_changed",
        "message": message,
        "previous_message": previous,
        "channel": channel,
        "hidden": True,
        "ts": ts,
        "event_ts": ts,
        "channel_type": _channel_type(channel),
    }


def assistant_thread_started(
    *,
    user: str = "U1",
    channel: str = "D1",
    thread_ts: str | None = None,
    team: str = "T1",
    context_channel: str | None = None,
) -> dict[str, Any]:
    """The ``assistant_thread_started`` event of the legacy AI-app side panel.

    ``context_channel``: the channel the student was viewing when they opened it.
    """
    ts = next_ts()
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": context_channel, "team_id": team, "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": thread_ts or ts,
        },
        "event_ts": ts,
    }


def app_uninstalled() -> dict[str, Any]:
    """``app_uninstalled``: the app was removed from the workspace of the envelope."""
    return {"type": "app_uninstalled", "event_ts": next_ts()}


def tokens_revoked(
    *, bot: list[str] | None = None, oauth: list[str] | None = None
) -> dict[str, Any]:
    """``tokens_revoked``: ``bot`` lists the bot user ids whose bot tokens were revoked,
    ``oauth`` the users whose user tokens were."""
    return {
        "type": "tokens_revoked",
        "tokens": {"oauth": list(oauth or []), "bot": list(bot or [])},
        "event_ts": next_ts(),
    }


def event_callback(
    event: dict[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = "T1",
    api_app_id: str = API_APP_ID,
    bot_user_id: str = "UBOT",
) -> dict[str, Any]:
    """The Events API envelope (``type: event_callback``) around one event."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_id("Ev0", 9),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + secrets.token_urlsafe(24),
    }


# ---------------------------------------------------------------------------
# slash commands and interactivity


def slash_command(
    text: str,
    *,
    command: str = "/tutor",
    user_id: str = "U1",
    channel_id: str = "C1",
    team_id: str = "T1",
    response_url: str | None = None,
    trigger_id: str | None = None,
    channel_name: str = "general",
) -> dict[str, str]:
    """The form fields of a slash-command request (all strings, as Slack sends them)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": "directmessage" if channel_id.startswith("D") else channel_name,
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url
        or f"https://hooks.slack.com/commands/{team_id}/{secrets.randbelow(10**12)}/x",
        "trigger_id": trigger_id or new_trigger_id(),
    }


def _user(user: str, team: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team}


def _find_element(message: dict[str, Any], action_id: str) -> tuple[str, dict[str, Any]] | None:
    for block in message.get("blocks") or []:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return str(block.get("block_id", "")), element
    return None


def block_actions(
    *,
    action_id: str,
    value: str | None = None,
    user: str = "U1",
    channel: str = "C1",
    message_ts: str | None = None,
    block_id: str | None = None,
    trigger_id: str | None = None,
    team: str = "T1",
    message: dict[str, Any] | None = None,
    response_url: str | None = None,
    action_type: str = "button",
) -> dict[str, Any]:
    """A ``block_actions`` payload for a click on an element of a message.

    Pass the stored ``message`` (e.g. from ``FakeSlack.messages``): its ts,
    thread and the clicked button's block_id, text and value are taken from it
    unless given. Use ``FakeSlack.new_trigger_id()`` / ``response_url()`` for a
    trigger or response URL the fake honours (the defaults are unknown to it).
    """
    if message is not None:  # as Slack sends it: no empty fields, no channel key
        message = {k: v for k, v in message.items() if v is not None and k != "channel"}
    message_ts = message_ts or (message or {}).get("ts")
    if message_ts is None:
        raise ValueError("block_actions needs message_ts or message")
    if message is None:
        message = {"type": "message", "ts": message_ts, "text": "", "user": "UBOT"}
    found = _find_element(message, action_id)
    element = found[1] if found else {}
    if block_id is None:
        block_id = found[0] if found else "b"
    if value is None:
        value = element.get("value", "")
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type,
        "action_ts": next_ts(),
    }
    if action_type == "button":
        action["text"] = element.get("text") or {"type": "plain_text", "text": value, "emoji": True}
        action["value"] = value
        if "style" in element:
            action["style"] = element["style"]
    else:
        action["selected_option"] = {"text": {"type": "plain_text", "text": value}, "value": value}
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions",
        "user": _user(user, team),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "state": {"values": {}},
        "response_url": response_url
        or f"https://hooks.slack.com/actions/{team}/{secrets.randbelow(10**12)}/x",
        "actions": [action],
    }


def _state_values(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        state[block_id] = {}
        for action_id, value in actions.items():
            if isinstance(value, dict):
                state[block_id][action_id] = value
            else:
                state[block_id][action_id] = {"type": "plain_text_input", "value": value}
    return state


def view_submission(
    *,
    callback_id: str | None = None,
    private_metadata: str | None = None,
    values: dict[str, dict[str, Any]],
    user: str = "U1",
    team: str = "T1",
    view_id: str | None = None,
    view: dict[str, Any] | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A ``view_submission`` payload.

    ``values`` is ``{block_id: {action_id: "text"}}`` (wrapped as
    ``plain_text_input`` state) or ``{block_id: {action_id: {...state...}}}``.
    Pass the opened ``view`` (``FakeSlack.views[-1]["view"]``) to submit that
    modal: id, blocks, callback_id and private_metadata come from it.
    """
    base = dict(view or {})
    view_id = view_id or base.get("id") or new_id("V", 10)
    body_view: dict[str, Any] = {
        "id": view_id,
        "team_id": team,
        "type": "modal",
        "blocks": base.get("blocks", []),
        "private_metadata": private_metadata
        if private_metadata is not None
        else base.get("private_metadata", ""),
        "callback_id": callback_id if callback_id is not None else base.get("callback_id", ""),
        "state": {"values": _state_values(values)},
        "hash": base.get("hash", f"{int(time.time())}.{secrets.token_hex(4)}"),
        "title": base.get("title", {"type": "plain_text", "text": "Modal", "emoji": True}),
        "clear_on_close": base.get("clear_on_close", False),
        "notify_on_close": base.get("notify_on_close", False),
        "close": base.get("close"),
        "submit": base.get("submit", {"type": "plain_text", "text": "Submit", "emoji": True}),
        "previous_view_id": base.get("previous_view_id"),
        "root_view_id": base.get("root_view_id", view_id),
        "app_id": API_APP_ID,
        "external_id": base.get("external_id", ""),
        "app_installed_team_id": team,
        "bot_id": base.get("bot_id", "BBOT"),
    }
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": TEAM_DOMAIN},
        "user": _user(user, team),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": body_view,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_closed(
    *, view: dict[str, Any], user: str = "U1", team: str = "T1", is_cleared: bool = False
) -> dict[str, Any]:
    """A ``view_closed`` payload (sent only for views opened with ``notify_on_close``)."""
    return {
        "type": "view_closed",
        "team": {"id": team, "domain": TEAM_DOMAIN},
        "user": _user(user, team),
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "view": view,
        "is_cleared": is_cleared,
        "is_enterprise_install": False,
        "enterprise": None,
    }


# ---------------------------------------------------------------------------
# signing and sending


def sign(signing_secret: str, body: bytes, timestamp: int) -> str:
    """Slack's request signature: ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Result:
    """What the bot answered to one delivery."""

    status: int
    body: str
    headers: dict[str, str]
    elapsed: float
    event_id: str | None = field(default=None)

    def json(self) -> Any:
        return json.loads(self.body)


class SlackSender:
    """Posts requests to a bot's ``/slack/events`` like Slack does (signed, right content types).

    ``on_event`` is called with every event posted through :meth:`post_event`
    (e.g. ``FakeSlack.add_message`` so the fake's history knows the user's
    messages).
    """

    def __init__(
        self,
        url: str,
        signing_secret: str,
        *,
        bot_user_id: str = "UBOT",
        api_app_id: str = API_APP_ID,
        timeout: float = 30.0,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.bot_user_id = bot_user_id
        self.api_app_id = api_app_id
        self.timeout = timeout
        self.on_event = on_event

    async def post_raw(
        self,
        body: bytes,
        *,
        content_type: str,
        signature: str | None = "valid",
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Result:
        """POST ``body``. ``signature``: "valid" signs it, other strings go as is, None omits it."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp)}
        if signature == "valid":
            sent["X-Slack-Signature"] = sign(self.signing_secret, body, timestamp)
        elif signature is not None:
            sent["X-Slack-Signature"] = signature
        sent.update(headers or {})
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(self.url, data=body, headers=sent) as resp,
        ):
            text = await resp.text()
            return Result(
                status=resp.status,
                body=text,
                headers=dict(resp.headers),
                elapsed=time.monotonic() - started,
            )

    async def post_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        team_id: str = "T1",
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Result:
        """Deliver one event in an ``event_callback`` envelope (same ``event_id`` for a retry)."""
        envelope = event_callback(
            event,
            event_id=event_id,
            team_id=team_id,
            api_app_id=self.api_app_id,
            bot_user_id=self.bot_user_id,
        )
        if self.on_event is not None:
            self.on_event(event)
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        result = await self.post_raw(
            json.dumps(envelope).encode(), content_type="application/json", headers=headers
        )
        result.event_id = envelope["event_id"]
        return result

    async def post_command(
        self,
        text: str,
        *,
        command: str = "/tutor",
        user_id: str = "U1",
        channel_id: str = "C1",
        team_id: str = "T1",
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> Result:
        """A slash command, form-encoded like Slack sends it."""
        form = slash_command(
            text,
            command=command,
            user_id=user_id,
            channel_id=channel_id,
            team_id=team_id,
            response_url=response_url,
            trigger_id=trigger_id,
        )
        return await self.post_raw(
            urlencode(form).encode(), content_type="application/x-www-form-urlencoded"
        )

    async def post_interaction(self, payload: dict[str, Any]) -> Result:
        """An interactivity request: form field ``payload`` holding the JSON."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post_raw(body, content_type="application/x-www-form-urlencoded")

    async def url_verification(self, challenge: str) -> Result:
        """The ``url_verification`` handshake Slack sends when the Request URL is saved."""
        body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        return await self.post_raw(json.dumps(body).encode(), content_type="application/json")


# ---------------------------------------------------------------------------
# agent surfaces: Messages and Home tabs, context, Stop, feedback, DMs
#
# Shapes from docs.slack.dev (events app_home_opened, app_context_changed,
# agent_session_stopped, assistant_thread_context_changed; the feedback buttons element;
# @slack/types AppContextChangedEvent and bolt-js FeedbackButtonsAction for fields the
# event pages' examples leave out).

CHANNEL_ENTITY = "slack#/types/channel_id"
MESSAGE_ENTITY = "slack#/types/message_context"


def dm_channel(user: str) -> str:
    """The fake's id for the DM between ``user`` and the app (what ``conversations.open`` gives)."""
    return f"D{user}"


def app_context(context_channel: str | None, *, team: str = "T1") -> dict[str, Any]:
    """The agent ``context`` object: what the student is viewing, most relevant first.

    Empty (``{}``) when they are viewing nothing Slack reports.
    """
    if context_channel is None:
        return {}
    return {"entities": [{"type": CHANNEL_ENTITY, "value": context_channel, "team_id": team}]}


def app_home_opened(
    *,
    user: str = "U1",
    tab: str = "messages",
    channel: str | None = None,
    view: dict[str, Any] | None = None,
    context_channel: str | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """``app_home_opened``: the student opened the app's Messages tab (``tab="messages"``,
    where an agent app greets) or its Home tab (``tab="home"``).

    ``channel`` is the DM with the app (default :func:`dm_channel`). ``view`` is the current
    Home view, which Slack includes once one has been published. ``context_channel`` adds
    the ``context`` Slack sends apps subscribed to ``app_context_changed``.
    """
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": channel or dm_channel(user),
        "tab": tab,
        "event_ts": next_ts(),
    }
    if view is not None:
        event["view"] = view
    if context_channel is not None:
        event["context"] = app_context(context_channel, team=team)
    return event


def app_context_changed(
    *,
    user: str = "U1",
    channel: str | None = None,
    context_channel: str | None = None,
    entities: list[dict[str, Any]] | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """``app_context_changed``: the student, with the agent open, now views ``context_channel``.

    ``entities`` replaces the generated list (e.g. a ``message_context`` entity); with
    neither, the context is ``{}`` as Slack sends it when nothing is in view.
    """
    context = app_context(context_channel, team=team)
    if entities is not None:
        context = {"entities": entities}
    return {
        "type": "app_context_changed",
        "user": user,
        "channel": channel or dm_channel(user),
        "context": context,
        "event_ts": next_ts(),
    }


def agent_session_stopped(
    *,
    user: str = "U1",
    channel: str | None = None,
    thread_ts: str,
    streaming_message_ts: list[str] | None = None,
) -> dict[str, Any]:
    """``agent_session_stopped``: the student pressed Stop on the session in ``thread_ts``.

    ``streaming_message_ts`` lists the app's live streams Slack stopped (empty if none);
    ``slack_agent_methods.stop_session`` builds it from the fake's state.
    """
    return {
        "type": "agent_session_stopped",
        "user": user,
        "channel": channel or dm_channel(user),
        "thread_ts": thread_ts,
        "streaming_message_ts": list(streaming_message_ts or []),
        "event_ts": next_ts(),
    }


def assistant_thread_context_changed(
    *,
    user: str = "U1",
    channel: str = "D1",
    thread_ts: str,
    context_channel: str | None,
    team: str = "T1",
) -> dict[str, Any]:
    """The legacy container's ``assistant_thread_context_changed``."""
    return {
        "type": "assistant_thread_context_changed",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": context_channel, "team_id": team, "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": next_ts(),
    }


def dm_message(
    *,
    text: str,
    user: str = "U1",
    channel: str | None = None,
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """A ``message.im`` event; without ``thread_ts`` it is the first message of a DM
    conversation (top level, as a student's first message in the Messages tab arrives)."""
    return message(
        text=text,
        user=user,
        channel=channel or dm_channel(user),
        channel_type="im",
        ts=ts,
        thread_ts=thread_ts,
        team=team,
    )


def _feedback_element(message: dict[str, Any], action_id: str | None) -> tuple[str, dict[str, Any]]:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if (
                isinstance(element, dict)
                and element.get("type") == "feedback_buttons"
                and action_id in (None, element.get("action_id"))
            ):
                return str(block.get("block_id", "")), element
    raise ValueError(f"no feedback_buttons element {action_id or ''} in the message")


def feedback_click(
    *,
    message: dict[str, Any],
    positive: bool = True,
    user: str = "U1",
    channel: str = "C1",
    action_id: str | None = None,
    team: str = "T1",
    response_url: str | None = None,
) -> dict[str, Any]:
    """A click on the 👍 (``positive``) or 👎 button of a stored message's feedback buttons.

    The ``block_actions`` payload's ``actions[0]`` is ``{type: "feedback_buttons",
    action_id, block_id, value, text, action_ts}`` with the clicked button's ``value`` and
    text; the container names the message (ts, channel, thread).
    """
    block_id, element = _feedback_element(message, action_id)
    button = element["positive_button" if positive else "negative_button"]
    payload = block_actions(
        action_id=str(element.get("action_id", "")),
        value=button["value"],
        user=user,
        channel=channel,
        message=message,
        block_id=block_id,
        team=team,
        response_url=response_url,
    )
    payload["actions"] = [
        {
            "type": "feedback_buttons",
            "action_id": element.get("action_id"),
            "block_id": block_id,
            "value": button["value"],
            "text": button["text"],
            "action_ts": next_ts(),
        }
    ]
    return payload
