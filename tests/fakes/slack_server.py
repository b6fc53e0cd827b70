"""A stateful fake Slack (Web API, files, response URLs, Socket Mode) on 127.0.0.1.

Start it, point the real ``AsyncWebClient(token, base_url=fake.api_url)`` at
it, and assert on what the bot did through its state (``messages``,
``views``, ``reactions``, …) or the raw ``calls``. Faults are injected per
method (``rate_limit_next``, ``fail_next``, ``disconnect_next``,
``delay_next``). The Web API methods themselves live in
:mod:`tests.fakes.slack_methods`; Block Kit checks in
:mod:`tests.fakes.slack_blocks`; Socket Mode in :mod:`tests.fakes.slack_socket`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from tests.fakes import slack_methods
from tests.fakes.slack_methods import SlackFailure
from tests.fakes.slack_payloads import new_id, next_ts, ts_key
from tests.fakes.slack_payloads import new_trigger_id as _format_trigger_id
from tests.fakes.slack_socket import FakeSocketMode

# Form/query fields Slack takes as JSON-encoded strings.
_JSON_FIELDS = frozenset(
    {
        "blocks",
        "attachments",
        "view",
        "files",
        "loading_messages",
        "chunks",
        "metadata",
        "unfurls",
        "prompts",
        "file_uploads",
    }
)

_LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to Slack</h1><form action='/signin'></form></body></html>"
)

RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL = 30 * 60.0


@dataclass
class ApiCall:
    """One Web API request as the fake received it."""

    method: str
    args: dict[str, Any]
    time: float  # time.monotonic() at arrival
    token: str | None
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class _Fault:
    kind: str  # "ratelimit" | "error" | "disconnect" | "delay"
    error: str = ""
    retry_after: int = 1
    status: int = 200
    seconds: float = 0.0


@dataclass
class _Trigger:
    issued_at: float
    user: str
    used: bool = False
    expired: bool = False


@dataclass
class _ResponseUrl:
    created_at: float
    channel: str | None
    message_ts: str | None
    user: str | None
    uses: int = 0


class _Members(dict[str, set[str]]):
    """channel -> member ids; a channel seen for the first time has the bot in it."""

    def __init__(self, bot_user_id: str) -> None:
        super().__init__()
        self._bot_user_id = bot_user_id

    def __missing__(self, channel: str) -> set[str]:
        members = {self._bot_user_id}
        self[channel] = members
        return members


def _form_value(value: str | bytes | bytearray | FileField) -> str | bytes:
    if isinstance(value, FileField):
        return value.file.read()
    return value if isinstance(value, str) else bytes(value)


def message_text(message: dict[str, Any]) -> str:
    """Everything a person would read in a message: text, markdown_text and block texts."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            text = node.get("text")
            if isinstance(text, str):
                parts.append(text)
            for key, value in node.items():
                if key != "text" or not isinstance(value, str):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for key in ("text", "markdown_text"):
        if isinstance(message.get(key), str):
            parts.append(message[key])
    walk(message.get("blocks") or [])
    return "\n".join(parts)


class FakeSlack:
    """Slack as a bot sees it: Web API, file hosting, response URLs and Socket Mode."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
        team_domain: str = "tutorbot-test",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_domain = team_domain

        self.base_url = ""
        self.api_url = ""
        self.calls: list[ApiCall] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str, bool]] = []
        self.statuses: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.downloads: list[dict[str, Any]] = []
        self.members: dict[str, set[str]] = _Members(bot_user_id)
        self.files: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}  # users.info overrides by id
        self.unknown_channels: set[str] = set()
        self.trigger_ttl = 3.0

        self.socket = FakeSocketMode(app_id=app_id, on_envelope=self._on_envelope)

        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._triggers: dict[str, _Trigger] = {}
        self._views_by_id: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._html_files: set[str] = set()
        self._pending_uploads: dict[str, dict[str, Any]] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._reacted: set[tuple[str, str, str]] = set()
        self._streaming: set[tuple[str, str]] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{key}/{tail:.*}", self._handle_download)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_get("/socket", self.socket.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self.api_url = f"{self.base_url}/api/"
        self.socket.url = f"ws://{host}:{port}/socket"

    async def stop(self) -> None:
        await self.socket.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ scenario controls

    def remove_bot(self, channel: str) -> None:
        """The bot leaves ``channel``: posting there answers ``not_in_channel``."""
        self.members[channel].discard(self.bot_user_id)

    def rate_limit_next(self, method: str, *, retry_after: int = 1, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` get HTTP 429 with ``Retry-After``."""
        for _ in range(count):
            self._faults[method].append(_Fault("ratelimit", retry_after=retry_after))

    def fail_next(self, method: str, error: str, count: int = 1, *, status: int = 200) -> None:
        """The next ``count`` calls of ``method`` answer ``{"ok": false, "error": error}``."""
        for _ in range(count):
            self._faults[method].append(_Fault("error", error=error, status=status))

    def disconnect_next(self, method: str, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` take effect, then the connection drops."""
        for _ in range(count):
            self._faults[method].append(_Fault("disconnect"))

    def delay_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` are answered after ``seconds``."""
        for _ in range(count):
            self._faults[method].append(_Fault("delay", seconds=seconds))

    def new_trigger_id(self, user: str = "U1") -> str:
        """A trigger id good for one ``views.open``/``views.push`` within ``trigger_ttl`` s."""
        trigger_id = _format_trigger_id()
        self._triggers[trigger_id] = _Trigger(issued_at=time.monotonic(), user=user)
        return trigger_id

    def expire_trigger(self, trigger_id: str) -> None:
        trigger = self._triggers.setdefault(
            trigger_id, _Trigger(issued_at=time.monotonic(), user="U1")
        )
        trigger.expired = True

    def response_url(
        self, *, channel: str | None = None, message_ts: str | None = None, user: str | None = None
    ) -> str:
        """A new response URL on the fake (5 uses, 30 min).

        POSTs are appended to ``ephemerals``; with ``message_ts``,
        ``replace_original``/``delete_original`` edit or delete that message,
        and ``response_type: in_channel`` posts to ``channel``.
        """
        rid = new_id("R", 12)
        self._response_urls[rid] = _ResponseUrl(time.monotonic(), channel, message_ts, user)
        return f"{self.base_url}/response/{rid}"

    def add_file(
        self,
        *,
        name: str,
        content: bytes,
        mimetype: str,
        filetype: str,
        html_instead: bool = False,
        user: str = "U1",
        title: str | None = None,
    ) -> dict[str, Any]:
        """Host ``content`` as a file a user shared; returns the Slack file object."""
        file = self._new_file(
            name=name,
            title=title or name,
            mimetype=mimetype,
            filetype=filetype,
            user=user,
            content=content,
        )
        if html_instead:
            self._html_files.add(file["id"])
        return file

    def add_message(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Record a user's message event (``message``/``app_mention``) in the channel history.

        Idempotent per channel+ts (the same message arrives as both event types).
        Returns the stored message, or None for events that are not new messages.
        """
        if event.get("type") not in ("message", "app_mention") or "channel" not in event:
            return None
        if event.get("subtype") in ("message_changed", "message_deleted"):
            return None
        channel = event["channel"]
        existing = self.find_message(channel, event["ts"])
        if existing is not None:
            return existing
        stored = {
            "type": "message",
            "ts": event["ts"],
            "thread_ts": event.get("thread_ts"),
            "text": event.get("text", ""),
            "blocks": event.get("blocks") or [],
            "user": event.get("user"),
            "bot_id": event.get("bot_id"),
            "markdown_text": None,
            "subtype": event.get("subtype"),
            "files": event.get("files"),
            "team": event.get("team", self.team_id),
            "channel": channel,
        }
        if event.get("user"):
            self.members[channel].add(event["user"])
        self.store_message(channel, stored)
        return stored

    def close_stream(self, channel: str, ts: str) -> None:
        """Slack ends a stream (after ~5 min): appends answer ``message_not_in_streaming_state``."""
        self._streaming.discard((channel, ts))

    # ------------------------------------------------------------------ queries

    def find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Replies in a thread (parent excluded), oldest first."""
        replies = [
            m
            for m in self.messages.get(channel, [])
            if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts
        ]
        return sorted(replies, key=lambda m: ts_key(m["ts"]))

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The bot's messages in ``channel`` (all of them, or those in one thread incl. parent)."""
        result = [m for m in self.messages.get(channel, []) if m.get("bot_id") == self.bot_id]
        if thread_ts is not None:
            result = [m for m in result if thread_ts in (m.get("thread_ts"), m["ts"])]
        return sorted(result, key=lambda m: ts_key(m["ts"]))

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll ``predicate`` (sync or async) every 20 ms; return its first truthy value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if loop.time() >= deadline:
                raise AssertionError(f"condition not met within {timeout}s\n{self.describe()}")
            await asyncio.sleep(0.02)

    def describe(self, last: int = 40) -> str:
        """A readable dump of recent calls and the stored messages, for failing tests."""
        lines = [f"last {min(last, len(self.calls))} of {len(self.calls)} Web API calls:"]
        start = self.calls[0].time if self.calls else 0.0
        for call in self.calls[-last:]:
            outcome = "ok" if call.ok else f"{call.status} {call.response.get('error')}"
            args = json.dumps(call.args, default=str)
            if len(args) > 300:
                args = args[:300] + "…"
            lines.append(f"  +{call.time - start:7.3f}s {call.method} [{outcome}] {args}")
        lines.append("messages:")
        for channel, msgs in self.messages.items():
            for m in sorted(msgs, key=lambda m: ts_key(m["ts"])):
                who = "bot" if m.get("bot_id") == self.bot_id else m.get("user")
                text = message_text(m).replace("\n", " ")[:120]
                lines.append(f"  {channel} {m['ts']} thread={m.get('thread_ts')} {who}: {text}")
        if self.ephemerals:
            lines.append(f"ephemerals: {self.ephemerals[-5:]}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ state helpers (methods)

    def store_message(self, channel: str, message: dict[str, Any]) -> None:
        self.messages[channel].append(message)

    def bot_message(
        self,
        channel: str,
        *,
        text: str | None,
        blocks: list[dict[str, Any]] | None = None,
        markdown_text: str | None = None,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Store and return a new message posted by the bot."""
        message: dict[str, Any] = {
            "type": "message",
            "ts": next_ts(),
            "thread_ts": thread_ts,
            "text": text if text is not None else (markdown_text or ""),
            "blocks": blocks or [],
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "markdown_text": markdown_text,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": "tutorbot",
                "deleted": False,
                "team_id": self.team_id,
            },
            "channel": channel,
        }
        if thread_ts is not None:
            parent = self.find_message(channel, thread_ts)
            message["parent_user_id"] = (parent or {}).get("user") or None
        message.update(extra)
        self.store_message(channel, message)
        return message

    def public(self, message: dict[str, Any]) -> dict[str, Any]:
        """A stored message as the API returns it (no None fields, no channel key)."""
        return {k: v for k, v in message.items() if v is not None and k != "channel"}

    def use_trigger(self, trigger_id: str | None) -> _Trigger:
        if not trigger_id:
            raise SlackFailure(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] missing required field: trigger_id"]},
            )
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise SlackFailure(
                "invalid_arguments", response_metadata={"messages": ["invalid `trigger_id`"]}
            )
        if trigger.used:
            raise SlackFailure("exchanged_trigger_id")
        if trigger.expired or time.monotonic() - trigger.issued_at > self.trigger_ttl:
            trigger.expired = True
            raise SlackFailure("expired_trigger_id")
        trigger.used = True
        return trigger

    def _new_file(
        self, *, name: str, title: str, mimetype: str, filetype: str, user: str, content: bytes
    ) -> dict[str, Any]:
        file_id = new_id("F0", 9)
        now = int(time.time())
        base = f"{self.base_url}/files-pri/{self.team_id}-{file_id}"
        file = {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": title,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(content),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{name}",
            "url_private_download": f"{base}/download/{name}",
            "permalink": f"https://{self.team_domain}.slack.com/files/{user}/{file_id}/{name}",
            "has_rich_preview": False,
            "file_access": "visible",
        }
        self.files[file_id] = file
        self._file_bytes[file_id] = content
        return file

    # ------------------------------------------------------------------ HTTP handlers

    async def _read_args(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    args.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    args[key] = _form_value(value)
        for key in _JSON_FIELDS & args.keys():
            value = args[key]
            if isinstance(value, str) and value[:1] in ("[", "{"):
                try:
                    args[key] = json.loads(value)
                except ValueError:
                    pass
        token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        return args, token

    def _auth_error(self, method: str, token: str | None) -> str | None:
        if not token:
            return "not_authed"
        if method == "apps.connections.open":
            wanted, other = self.app_token, self.bot_token
        else:
            wanted, other = self.bot_token, self.app_token
        if token == wanted:
            return None
        return "not_allowed_token_type" if token == other else "invalid_auth"

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args, token = await self._read_args(request)
        call = ApiCall(method=method, args=args, time=time.monotonic(), token=token)
        self.calls.append(call)

        headers: dict[str, str] = {}
        fault = self._faults[method].popleft() if self._faults.get(method) else None
        auth_error = self._auth_error(method, token)
        if auth_error is not None:
            call.response = {"ok": False, "error": auth_error}
        elif fault is not None and fault.kind == "ratelimit":
            call.status = 429
            headers["Retry-After"] = str(fault.retry_after)
            call.response = {"ok": False, "error": "ratelimited"}
        elif fault is not None and fault.kind == "error":
            call.status = fault.status
            call.response = {"ok": False, "error": fault.error}
        else:
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            call.response = self._dispatch(method, args)
        if fault is not None and fault.kind == "disconnect" and request.transport is not None:
            request.transport.close()
        return web.json_response(call.response, status=call.status, headers=headers)

    def _dispatch(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = slack_methods.METHODS.get(method)
        if handler is None:
            return {"ok": True}
        try:
            return {"ok": True, **handler(self, args)}
        except SlackFailure as failure:
            return {"ok": False, "error": failure.error, **failure.extra}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        pending = self._pending_uploads.get(file_id)
        if pending is None:
            return web.Response(status=404, text="not found", content_type="text/plain")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = _form_value(next(iter(form.values()), b""))
            data = part.encode() if isinstance(part, str) else part
        else:
            data = await request.read()
        pending["bytes"] = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _handle_download(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        file_id = key.split("-", 1)[-1]
        authorized = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        self.downloads.append({"file_id": file_id, "authorized": authorized})
        if not authorized or file_id in self._html_files or file_id not in self._file_bytes:
            # What Slack does without a valid token: a 200 HTML login page, not an error.
            return web.Response(text=_LOGIN_PAGE, content_type="text/html")
        file = self.files[file_id]
        return web.Response(body=self._file_bytes[file_id], content_type=file["mimetype"])

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        entry = self._response_urls.get(request.match_info["rid"])
        if entry is None:
            return web.Response(status=404, text="no_service")
        if time.monotonic() - entry.created_at > RESPONSE_URL_TTL:
            return web.Response(status=404, text="expired_url")
        if entry.uses >= RESPONSE_URL_MAX_USES:
            return web.Response(status=404, text="used_url")
        entry.uses += 1
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = json.loads(str((await request.post()).get("payload", "{}")))
        self.ephemerals.append(
            {
                "via": "response_url",
                "channel": entry.channel,
                "user": entry.user,
                "text": body.get("text"),
                "blocks": body.get("blocks"),
                "response_type": body.get("response_type", "ephemeral"),
                "replace_original": bool(body.get("replace_original")),
                "delete_original": bool(body.get("delete_original")),
                "thread_ts": body.get("thread_ts"),
            }
        )
        original = (
            self.find_message(entry.channel, entry.message_ts)
            if entry.channel and entry.message_ts
            else None
        )
        if original is not None and body.get("delete_original"):
            self.messages[entry.channel or ""].remove(original)
        elif original is not None and body.get("replace_original"):
            original["text"] = body.get("text", "")
            original["blocks"] = body.get("blocks") or []
            original["edited"] = {"user": self.bot_user_id, "ts": next_ts()}
        elif body.get("response_type") == "in_channel" and entry.channel:
            self.bot_message(
                entry.channel,
                text=body.get("text"),
                blocks=body.get("blocks"),
                thread_ts=body.get("thread_ts"),
            )
        return web.Response(text="ok", content_type="text/plain")

    def _on_envelope(self, type: str, payload: dict[str, Any]) -> None:
        if type == "events_api" and isinstance(payload.get("event"), dict):
            self.add_message(payload["event"])
