"""Wiring: settings -> store, runtime, Slack client, core -> Bolt app -> HTTP or Socket Mode.

``TutorBot`` owns every resource and closes them in reverse order; ``run`` serves until
SIGINT/SIGTERM. Tests start a ``TutorBot`` in-process exactly as ``python -m bot`` does.

One workspace: ``SLACK_BOT_TOKEN`` is every call's token. Many (``SLACK_CLIENT_ID`` …):
Bolt's OAuth flow installs the app (``GET /slack/install``, ``GET /slack/oauth_redirect``),
Bolt's authorize finds each request's workspace, and the core's calls carry the token of
the workspace at hand (``bot.oauth``, ``bot.workspaces``, ``handlers.workspaces``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

import handlers.agent
import handlers.commands
import handlers.events
import handlers.feedback
import handlers.home_tab
import handlers.quiz_actions
import handlers.workspaces
from bot.agent.feedback import feedback_blocks
from bot.agent.messages_tab import MessagesTab
from bot.config import Settings
from bot.core.assembly import CONSOLE_TEAM, Core
from bot.oauth import INSTALL_PATH, REDIRECT_PATH, WorkspaceInstalls
from bot.replies import Replies, make_http_session, make_web_client
from bot.slack_signature import is_signed_by_slack
from bot.student_pages import StudentPages
from bot.votes import AnswerFeedback
from store import StoreError

log = logging.getLogger(__name__)


class _NoTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and warns, at every start, that our client's
    token is used instead; that is intended, so the warning is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_NoTokenNotice())

ACK_WINDOW = 2000  # Slack requests whose answer times /healthz reports


class TutorBot:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.http = make_http_session()
        self.installs = WorkspaceInstalls(settings) if settings.many_workspaces else None
        # Many workspaces: no token of its own; every call names its workspace's.
        token = None if self.installs else settings.slack_bot_token
        self.web_client = make_web_client(token, settings.slack_api_url, session=self.http)
        self.replies = Replies(
            self.web_client,
            make_web_client(
                token, settings.slack_api_url, wait_out_rate_limits=False, session=self.http
            ),
            tokens=self.installs.tokens if self.installs else None,
        )
        # Console conversations may share the database; they are never posted to Slack.
        self.core = Core(
            settings,
            self.replies,
            slack_token=self.replies.token if self.installs else None,
            exclude_teams=(CONSOLE_TEAM,),
            answer_blocks=lambda turn: feedback_blocks(turn.id),
        )
        self.tasks = self.core.tasks
        self.store = self.core.store
        self.runtime = self.core.runtime
        self.telemetry = self.core.telemetry
        self.quizzes = self.core.quizzes
        self.budget = self.core.budget
        self.files = self.core.files
        self.processor = self.core.processor
        self.conversation = self.core.conversation
        self.messages_tab = MessagesTab(store=self.store, replies=self.replies, tasks=self.tasks)
        self.feedback = AnswerFeedback(
            store=self.store, replies=self.replies, telemetry=self.telemetry
        )
        self.pages = StudentPages(
            store=self.store,
            replies=self.replies,
            model=self.runtime.model,
            runtime=self.runtime.name,
        )
        self.bolt = self._build_bolt()
        # Only HTTP mode serves /slack/events, and it always has a signing secret.
        self._verifier = SignatureVerifier(settings.slack_signing_secret or "unused")
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._ack_ms: deque[float] = deque(maxlen=ACK_WINDOW)
        self.port: int | None = None

    def _build_bolt(self) -> AsyncApp:
        s = self.settings
        installs = self.installs
        many: dict[str, Any] = {}
        if installs is not None:
            many = {
                "oauth_settings": installs.oauth_settings,
                "installation_store": installs.installations,
                "authorize": installs.authorize,
                "before_authorize": handlers.workspaces.WorkspaceGate(installs.tokens),
            }
        app = AsyncApp(
            client=self.web_client,
            signing_secret=s.slack_signing_secret or "",
            # ``_slack_events`` verifies every HTTP request before its body is parsed; Socket
            # Mode needs no signature. Bolt checking again would only repeat the HMAC.
            request_verification_enabled=False,
            # Slack is answered after the listener: a message is acknowledged once recorded
            # (the listeners hand slow work to owned tasks, so this stays fast).
            process_before_response=True,
            raise_error_for_unhandled_request=False,
            **many,
        )

        @app.error
        async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
            if isinstance(error, StoreError):
                # Not recorded: a 5xx makes Slack deliver it again (in Socket Mode, no ack).
                log.warning(
                    "a %s request could not be recorded: %s", (body or {}).get("type"), error
                )
                return BoltResponse(status=503, body="try again")
            # Payloads our listeners (or Bolt's matchers) cannot make sense of: a 4xx, not a
            # 5xx Slack would keep retrying.
            log.error("failed on a %s request: %s", (body or {}).get("type"), error, exc_info=error)
            return BoltResponse(status=400, body="bad request")

        if installs is not None:  # before the events' catch-all
            handlers.workspaces.register(app, installs.installations, installs.tokens)
        # Before the catch-alls of handlers.events (events) and handlers.quiz_actions (actions).
        handlers.agent.register(app, self.conversation, self.messages_tab)
        handlers.home_tab.register(app, self.pages, self.tasks)
        handlers.feedback.register(app, self.feedback, self.tasks)
        handlers.events.register(app, self.conversation, self.messages_tab)
        handlers.commands.register(app, self.conversation, s.slash_command, self.tasks, self.pages)
        handlers.quiz_actions.register(app, self.quizzes, self.replies, self.tasks)
        return app

    # -- HTTP ---------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        if not self.settings.socket_mode:  # in Socket Mode, Slack's requests come over the socket
            app.router.add_post("/slack/events", self._slack_events)
        if self.installs is not None:  # people's browsers, not Slack: nothing to verify
            app.router.add_get(INSTALL_PATH, self._install_page)
            app.router.add_get(REDIRECT_PATH, self._oauth_redirect)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _install_page(self, request: web.Request) -> web.Response:
        """The "Add to Slack" page (Bolt's), with the state cookie the redirect is checked by."""
        flow = self.bolt.oauth_flow
        assert flow is not None
        return await to_aiohttp_response(
            await flow.handle_installation(await to_bolt_request(request))
        )

    async def _oauth_redirect(self, request: web.Request) -> web.Response:
        """Slack sends the installer back here: Bolt checks the state, exchanges the code
        (``oauth.v2.access``) and saves the installation."""
        flow = self.bolt.oauth_flow
        assert flow is not None
        return await to_aiohttp_response(await flow.handle_callback(await to_bolt_request(request)))

    async def _slack_events(self, request: web.Request) -> web.Response:
        ingest = self.conversation.ingest
        ingest.started()
        started = time.monotonic()
        try:
            return await self._handle_slack_request(request)
        finally:
            ingest.ended()
            self._ack_ms.append((time.monotonic() - started) * 1000)

    async def _handle_slack_request(self, request: web.Request) -> web.Response:
        # Unsigned requests are refused before anything parses their body; the only check.
        body = (await request.read()).decode("utf-8", errors="replace")
        if not is_signed_by_slack(self._verifier, body, request.headers):
            return web.Response(status=401, text="invalid request signature")
        try:
            bolt_request = await to_bolt_request(request)
        except Exception:
            log.warning("unreadable Slack request body")
            return web.Response(status=400, text="bad request")
        try:
            bolt_response = await self.bolt.async_dispatch(bolt_request)
        except Exception as exc:
            # A payload Bolt cannot make sense of (malformed JSON with a valid signature…).
            log.warning(
                "could not dispatch a Slack request: %s",
                type(exc).__name__,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return web.Response(status=400, text="bad request")
        return await to_aiohttp_response(bolt_response)

    async def _healthz(self, request: web.Request) -> web.Response:
        up = self.conversation.health.up
        acks = sorted(self._ack_ms)
        return web.json_response(
            {
                "ok": up,
                "database": "ok" if up else "unreachable",
                "runtime": self.runtime.name,
                "mode": "socket" if self.settings.socket_mode else "http",
                "active_threads": self.conversation.busy_threads,
                # How long the last Slack requests took to be answered, here (ms).
                "ack_ms": {
                    "count": len(acks),
                    "p50": round(acks[len(acks) // 2], 1) if acks else None,
                    "p99": round(acks[min(len(acks) - 1, int(len(acks) * 0.99))], 1)
                    if acks
                    else None,
                },
            },
            status=200 if up else 503,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, *, port: int | None = None) -> None:
        """Open the store, prepare the runtime, resume turns in flight, start serving."""
        await self.core.open()
        if self.installs is not None:
            self.installs.bind(self.store.engine)
        await self.conversation.start()
        if self.settings.socket_mode:
            assert self.settings.slack_app_token is not None
            self._socket = AsyncSocketModeHandler(self.bolt, self.settings.slack_app_token)
            await self._socket.connect_async()
            log.info("connected to Slack in Socket Mode")
            if port is None:
                return
        self._runner = web.AppRunner(self.web_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host="0.0.0.0", port=self.settings.port if port is None else port
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        paths = "POST /slack/events, GET /healthz"
        if self.installs is not None:
            paths += f", GET {INSTALL_PATH}, GET {REDIRECT_PATH}"
        log.info("listening on port %s (%s)", self.port, paths)

    async def stop(self) -> None:
        """Stop taking requests, park the turns in flight (resumed on the next start), close."""
        if self._socket is not None:
            try:
                await asyncio.wait_for(self._socket.close_async(), timeout=5)
            except Exception:
                log.warning("socket mode did not close cleanly")
        if self._runner is not None:
            await self._runner.cleanup()
        await self.core.close()
        await self.http.close()
        log.info("stopped")


async def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    bot = TutorBot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Installing into many workspaces needs the install pages, in Socket Mode too.
    serve_http = not settings.socket_mode or settings.port_set or settings.many_workspaces
    await bot.start(port=settings.port if serve_http else None)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await bot.stop()
