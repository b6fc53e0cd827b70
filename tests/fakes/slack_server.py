"""A stateful fake Slack (Web API, files, response URLs, Socket Mode) on 127.0.0.1.

Start it, point the real ``AsyncWebClient(token, base_url=fake.api_url)`` at
it, and assert on what the bot did through its state (``messages``,
``views``, ``reactions``, …) or the raw ``calls``. Faults are injected per
method (``rate_limit_next``, ``fail_next``, ``disconnect_next``,
``delay_next``); Slack's tier limits with ``enforce_rate_limits``; an outage
with ``go_offline`` / ``go_online``. Time-based rules (stream lifetime, status
expiry, rate-limit refill, trigger ids) run on ``clock``, which tests move
with ``clock.advance(seconds)``. The Web API methods themselves live in
:mod:`tests.fakes.slack_methods` and :mod:`tests.fakes.slack_streams`; rate
limits in :mod:`tests.fakes.slack_limits`; Block Kit checks in
:mod:`tests.fakes.slack_blocks`; Socket Mode in :mod:`tests.fakes.slack_socket`; several
workspaces and the OAuth install flow in :mod:`tests.fakes.slack_workspaces` (a call acts
for the workspace whose bot token it carries; ``bot_token``, ``team_id``, ``bot_user_id``
and ``bot_id`` are the first workspace's).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from tests.fakes import slack_methods, slack_streams
from tests.fakes.slack_limits import RateLimit, RateLimiter
from tests.fakes.slack_methods import MAX_TEXT, Handler, SlackFailure
from tests.fakes.slack_payloads import new_id, next_ts, ts_key
from tests.fakes.slack_payloads import new_trigger_id as _format_trigger_id
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.slack_streams import StreamState
from tests.fakes.slack_workspaces import OAuthFlow, Workspace, new_bot_token

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
STREAM_TTL = 5 * 60.0  # Slack closes a stream about 5 minutes after it started
STATUS_TTL = 2 * 60.0  # an assistant thread status disappears after 2 minutes

METHODS: dict[str, Handler] = {**slack_methods.METHODS, **slack_streams.METHODS}


class FakeClock:
    """``time.monotonic()`` plus an offset that tests move forward with ``advance``."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


@dataclass
class ApiCall:
    """One Web API request as the fake received it."""

    method: str
    args: dict[str, Any]
    time: float  # time.monotonic() at arrival
    token: str | None
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    team: str | None = None  # the workspace the token belongs to (None: no such token)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class _Fault:
    kind: str  # "ratelimit" | "error" | "disconnect" | "delay" | "late"
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
    """channel -> member ids; a channel seen for the first time has the bot in it (the bot
    of every workspace known then: channel ids are unique across workspaces)."""

    def __init__(self, bot_user_ids: Callable[[], set[str]]) -> None:
        super().__init__()
        self._bot_user_ids = bot_user_ids

    def __missing__(self, channel: str) -> set[str]:
        members = set(self._bot_user_ids())
        self[channel] = members
        return members


def _form_value(value: str | bytes | bytearray | FileField) -> str | bytes:
    if isinstance(value, FileField):
        return value.file.read()
    return value if isinstance(value, str) else bytes(value)


def message_text(message: dict[str, Any]) -> str:
    """Everything a person would read in a message: text, markdown_text and block texts
    (not the labels of its 👍 / 👎 feedback buttons: see ``feedback_buttons``)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "context_actions":
                return
            text = node.get("text")
            if isinstance(text, str):
                parts.append(text)
            for key, value in node.items():
                if key != "text" or not isinstance(value, str):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    markdown = message.get("markdown_text")
    if isinstance(markdown, str):
        parts.append(markdown)  # ``text`` is only its notification fallback
    elif isinstance(message.get("text"), str) and not message.get("blocks"):
        parts.append(message["text"])  # with blocks, ``text`` is only the fallback too
    walk(message.get("blocks") or [])
    return "\n".join(parts)


def feedback_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``feedback_buttons`` elements of a message (under an answer)."""
    return [
        element
        for block in message.get("blocks") or []
        if block.get("type") == "context_actions"
        for element in block.get("elements") or []
        if isinstance(element, dict) and element.get("type") == "feedback_buttons"
    ]


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
        # team id -> workspace; the first is the one above (see tests.fakes.slack_workspaces).
        self.workspaces: dict[str, Workspace] = {
            team_id: Workspace(
                team_id=team_id,
                bot_token=bot_token,
                bot_user_id=bot_user_id,
                bot_id=bot_id,
                team_domain=team_domain,
                name="Tutorbot Test",
            )
        }
        self.default_team_id = team_id
        self.oauth = OAuthFlow(self)

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
        self.members: dict[str, set[str]] = _Members(
            lambda: {w.bot_user_id for w in self.workspaces.values()}
        )
        self.files: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}  # users.info overrides by id
        self.unknown_channels: set[str] = set()
        self.trigger_ttl = 3.0
        # Agent-app surfaces (tests.fakes.slack_agent_methods, views.publish). app_surface is
        # how the app is configured: "agent_view", "assistant_view" (legacy) or "none".
        self.app_surface = "agent_view"
        self.missing_scopes: set[str] = set()  # e.g. {"assistant:write"}: missing_scope
        self.stop_event_subscribed = True  # agent_session_stopped in the app's events
        self.suggested_prompts: list[dict[str, Any]] = []
        self.titles: list[dict[str, Any]] = []
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}  # user -> their published Home view
        self.stopped_streams: set[tuple[str, str]] = set()  # (channel, ts) stopped by a student
        self.clock = FakeClock()
        self.stream_ttl = STREAM_TTL
        self.status_ttl = STATUS_TTL
        # Markdown a single streamed message may hold in total (not documented by Slack;
        # the general message text limit): past it an append answers msg_too_long.
        self.max_stream_chars = MAX_TEXT
        self.streams: dict[tuple[str, str], StreamState] = {}
        self.streaming_refused: set[str] = set()
        self.rate_limiter = RateLimiter(self.clock.now)

        self.socket = FakeSocketMode(app_id=app_id, on_envelope=self._on_envelope)

        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._triggers: dict[str, _Trigger] = {}
        self._views_by_id: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._html_files: set[str] = set()
        self._file_redirects: dict[str, str] = {}
        self._file_trickles: dict[str, float] = {}
        self._pending_uploads: dict[str, dict[str, Any]] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._reacted: set[tuple[str, str, str]] = set()
        # (channel, thread_ts) -> {"status", "loading_messages", "set_at"}
        self._status: dict[tuple[str, str], dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host, self._port = "127.0.0.1", 0
        self._offline = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=100 * 1024 * 1024, middlewares=[self._outage])
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/v1/{file_id}", self._handle_upload)
        app.router.add_get("/files-pri/{key}/{tail:.*}", self._handle_download)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_get("/socket", self.socket.handle)
        app.router.add_get("/oauth/v2/authorize", self.oauth.authorize_page)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        host, port = self._runner.addresses[0][:2]
        self._host, self._port = host, port
        self.base_url = f"http://{host}:{port}"
        self.api_url = f"{self.base_url}/api/"
        self.socket.url = f"ws://{host}:{port}/socket"

    async def stop(self) -> None:
        await self.socket.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def go_offline(self, *, drop_socket_mode: bool = False) -> None:
        """Slack becomes unreachable: the port stops listening (new connections are refused)
        and requests on kept-alive connections are cut. State is kept. Socket Mode
        connections already open stay up unless ``drop_socket_mode``."""
        self._offline = True
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if drop_socket_mode:
            await self.socket.drop_connections()

    async def go_online(self) -> None:
        """Listen again on the same port (same ``api_url``)."""
        self._offline = False
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(self._runner, self._host, self._port)
            await self._site.start()

    @web.middleware
    async def _outage(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._offline and request.path != "/socket":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        response: web.StreamResponse = await handler(request)
        return response

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ scenario controls

    def add_workspace(
        self,
        team_id: str,
        *,
        bot_user_id: str | None = None,
        bot_id: str | None = None,
        bot_token: str | None = None,
        name: str | None = None,
    ) -> Workspace:
        """Another workspace the app can be installed in (its token works at once)."""
        workspace = Workspace(
            team_id=team_id,
            bot_token=bot_token or new_bot_token(team_id),
            bot_user_id=bot_user_id or f"UBOT{team_id}",
            bot_id=bot_id or f"BBOT{team_id}",
            team_domain=f"tutorbot-{team_id.lower()}",
            name=name or f"Workspace {team_id}",
        )
        self.workspaces[team_id] = workspace
        return workspace

    def uninstall(self, team_id: str) -> None:
        """The app is uninstalled from ``team_id``: its token answers ``token_revoked``.
        (The ``app_uninstalled`` event is the test's to deliver.)"""
        self.workspaces[team_id].revoked = True

    def workspace_of(self, token: str | None) -> Workspace | None:
        return next((w for w in self.workspaces.values() if w.bot_token == token), None)

    def set_bot_token(self, workspace: Workspace, token: str) -> None:
        workspace.bot_token = token
        if workspace.team_id == self.default_team_id:
            self.bot_token = token

    def calls_from(self, team_id: str) -> list[ApiCall]:
        """The Web API calls made with ``team_id``'s bot token."""
        return [c for c in self.calls if c.team == team_id]

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

    def answer_late_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` take effect at once (the message is there
        for everyone to see) and are answered ``seconds`` later."""
        for _ in range(count):
            self._faults[method].append(_Fault("late", seconds=seconds))

    def faults_pending(self, method: str) -> int:
        """How many injected faults the next calls of ``method`` will still meet."""
        return len(self._faults.get(method) or ())

    def new_trigger_id(self, user: str = "U1") -> str:
        """A trigger id good for one ``views.open``/``views.push`` within ``trigger_ttl`` s."""
        trigger_id = _format_trigger_id()
        self._triggers[trigger_id] = _Trigger(issued_at=self.clock.now(), user=user)
        return trigger_id

    def expire_trigger(self, trigger_id: str) -> None:
        trigger = self._triggers.setdefault(
            trigger_id, _Trigger(issued_at=self.clock.now(), user="U1")
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
        self._response_urls[rid] = _ResponseUrl(self.clock.now(), channel, message_ts, user)
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
        team: str | None = None,
    ) -> dict[str, Any]:
        """Host ``content`` as a file a user shared (in ``team``, default the first
        workspace: only its bot token downloads it); returns the Slack file object."""
        with self._acting_as(self.workspaces[team or self.default_team_id]):
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

    def redirect_file(self, file_id: str, location: str) -> None:
        """Downloads of ``file_id`` answer 302 to ``location`` (as a compromised host might)."""
        self._file_redirects[file_id] = location

    def trickle_file(self, file_id: str, bytes_per_second: float) -> None:
        """Downloads of ``file_id`` send its bytes at this rate; 0: headers, then silence."""
        self._file_trickles[file_id] = bytes_per_second

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
        stream = self.streams.get((channel, ts))
        if stream is not None and stream.state == "streaming":
            stream.state = "expired"

    def stop_stream_by_user(self, channel: str, ts: str) -> None:
        """The person pressed stop: later appends and stops answer ``stopped_by_user``."""
        stream = self.streams.get((channel, ts))
        if stream is None:
            raise KeyError(f"no stream {channel} {ts}")
        if stream.state == "streaming":
            stream.state = "stopped_by_user"

    def refuse_streaming(self, channel: str) -> None:
        """``chat.startStream`` in ``channel`` answers ``channel_type_not_supported``."""
        self.streaming_refused.add(channel)

    def enforce_rate_limits(self, overrides: Mapping[str, RateLimit] | None = None) -> None:
        """Turn on Slack's tier limits (``slack_limits.DEFAULT_LIMITS``), per token and method;
        ``overrides`` replaces some (``RateLimit(per_minute, burst=…, per_channel=…)``)."""
        self.rate_limiter.enforce(overrides)

    def disable_rate_limits(self) -> None:
        self.rate_limiter.disable()

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
        """The bot's messages in ``channel`` (all of them, or those in one thread incl. parent),
        whichever workspace's bot posted them."""
        bots = {w.bot_id for w in self.workspaces.values()}
        result = [m for m in self.messages.get(channel, []) if m.get("bot_id") in bots]
        if thread_ts is not None:
            result = [m for m in result if thread_ts in (m.get("thread_ts"), m["ts"])]
        return sorted(result, key=lambda m: ts_key(m["ts"]))

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def stream_state(self, channel: str, ts: str) -> StreamState | None:
        """The stream behind a message (None if it was never streamed); expiry applied."""
        stream = self.streams.get((channel, ts))
        if (
            stream is not None
            and stream.state == "streaming"
            and self.clock.now() - stream.started_at >= self.stream_ttl
        ):
            stream.state = "expired"
        return stream

    def is_streaming(self, channel: str, ts: str) -> bool:
        stream = self.stream_state(channel, ts)
        return stream is not None and stream.state == "streaming"

    def tasks(self, channel: str, ts: str) -> dict[str, dict[str, Any]]:
        """A streamed message's tasks: id -> latest ``{id, title, status, details, output}``."""
        stream = self.streams.get((channel, ts))
        return {k: dict(v) for k, v in stream.tasks.items()} if stream else {}

    def task_updates(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Every ``task_update`` chunk of a streamed message, in order."""
        stream = self.streams.get((channel, ts))
        return [dict(u) for u in stream.task_updates] if stream else []

    def status_of(self, channel: str, thread_ts: str) -> str | None:
        """The assistant status shown under a thread now (None: none)."""
        current = self._status.get((channel, thread_ts))
        if current is None:
            return None
        if self.clock.now() - current["set_at"] >= self.status_ttl:
            del self._status[(channel, thread_ts)]
            return None
        return str(current["status"])

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

    def set_status(
        self, channel: str, thread_ts: str, status: str, loading_messages: list[str] | None
    ) -> None:
        if not status:
            self._status.pop((channel, thread_ts), None)
            return
        self._status[(channel, thread_ts)] = {
            "status": status,
            "loading_messages": loading_messages,
            "set_at": self.clock.now(),
        }

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
            self._status.pop((channel, thread_ts), None)  # the app's reply clears its status
        message.update(extra)
        self.store_message(channel, message)
        return message

    def public(self, message: dict[str, Any], *, metadata: bool = True) -> dict[str, Any]:
        """A stored message as the API returns it (no None fields, no channel key; history
        methods show ``metadata`` only with ``include_all_metadata``)."""
        hidden = ("channel",) if metadata else ("channel", "metadata")
        return {k: v for k, v in message.items() if v is not None and k not in hidden}

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
        if trigger.expired or self.clock.now() - trigger.issued_at > self.trigger_ttl:
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
        workspace = self.workspace_of(token)
        if method == "apps.connections.open":
            if token == self.app_token:
                return None
            return "not_allowed_token_type" if workspace is not None else "invalid_auth"
        if workspace is not None:
            return "token_revoked" if workspace.revoked else None
        return "not_allowed_token_type" if token == self.app_token else "invalid_auth"

    @contextmanager
    def _acting_as(self, workspace: Workspace | None) -> Iterator[None]:
        """Methods see the calling workspace's ids as ``team_id``, ``bot_user_id``…"""
        if workspace is None or workspace.team_id == self.team_id:
            yield
            return
        names = ("team_id", "bot_token", "bot_user_id", "bot_id", "team_domain")
        saved = {name: getattr(self, name) for name in names}
        for name in names:
            setattr(self, name, getattr(workspace, name))
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args, token = await self._read_args(request)
        workspace = self.workspace_of(token)
        call = ApiCall(
            method=method,
            args=args,
            time=time.monotonic(),
            token=token,
            team=workspace.team_id if workspace else None,
        )
        self.calls.append(call)

        if method == "oauth.v2.access":  # the app's credentials, not a token
            try:
                call.response = {
                    "ok": True,
                    **self.oauth.access(args, request.headers.get("Authorization", "")),
                }
            except SlackFailure as failure:
                call.response = {"ok": False, "error": failure.error}
            return web.json_response(call.response)
        headers: dict[str, str] = {}
        fault = self._faults[method].popleft() if self._faults.get(method) else None
        auth_error = self._auth_error(method, token)
        retry_after = None if auth_error else self.rate_limiter.admit(token, method, args)
        if auth_error is not None:
            call.response = {"ok": False, "error": auth_error}
        elif retry_after is not None:
            call.status = 429
            headers["Retry-After"] = str(retry_after)
            call.response = {"ok": False, "error": "ratelimited"}
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
            with self._acting_as(workspace):
                call.response = self._dispatch(method, args)
            if fault is not None and fault.kind == "late":
                await asyncio.sleep(fault.seconds)
        if fault is not None and fault.kind == "disconnect" and request.transport is not None:
            request.transport.close()
        return web.json_response(call.response, status=call.status, headers=headers)

    def _dispatch(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = METHODS.get(method)
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

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        team_id, _, file_id = key.rpartition("-")
        # Only a live token of the workspace the file was shared in opens it.
        owner = self.workspaces.get(team_id) or self.workspaces[self.default_team_id]
        authorized = (
            not owner.revoked
            and request.headers.get("Authorization") == f"Bearer {owner.bot_token}"
        )
        self.downloads.append({"file_id": file_id, "authorized": authorized})
        if file_id in self._file_redirects:
            raise web.HTTPFound(self._file_redirects[file_id])
        if not authorized or file_id in self._html_files or file_id not in self._file_bytes:
            # What Slack does without a valid token: a 200 HTML login page, not an error.
            return web.Response(text=_LOGIN_PAGE, content_type="text/html")
        file = self.files[file_id]
        if file_id in self._file_trickles:
            return await self._trickle(request, file_id, self._file_trickles[file_id])
        return web.Response(body=self._file_bytes[file_id], content_type=file["mimetype"])

    async def _trickle(
        self, request: web.Request, file_id: str, bytes_per_second: float
    ) -> web.StreamResponse:
        """A slow file host: small pieces every 0.1 s (none at all for 0), until sent or closed."""
        content = self._file_bytes[file_id]
        response = web.StreamResponse(headers={"Content-Type": self.files[file_id]["mimetype"]})
        response.content_length = len(content)
        await response.prepare(request)
        step = max(1, int(bytes_per_second / 10)) if bytes_per_second > 0 else 0
        sent = 0
        while step == 0 or sent < len(content):
            if request.transport is None or request.transport.is_closing():
                return response
            if step:
                try:
                    await response.write(content[sent : sent + step])
                except ConnectionError:
                    return response
                sent += step
            await asyncio.sleep(0.1)
        return response

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        entry = self._response_urls.get(request.match_info["rid"])
        if entry is None:
            return web.Response(status=404, text="no_service")
        if self.clock.now() - entry.created_at > RESPONSE_URL_TTL:
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
