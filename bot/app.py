"""Wiring: settings -> store, runtime, Slack client, core -> Bolt app -> HTTP or Socket Mode.

``TutorBot`` owns every resource and closes them in reverse order; ``run`` serves until
SIGINT/SIGTERM. Tests start a ``TutorBot`` in-process exactly as ``python -m bot`` does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

import handlers.commands
import handlers.events
import handlers.quiz_actions
from bot.config import Settings
from bot.conversation import Conversation
from bot.files import FileIntake
from bot.quiz.flow import QuizFlow
from bot.replies import Replies, make_web_client
from bot.runtime import create_runtime
from bot.tasks import BackgroundTasks
from bot.telemetry import create_telemetry
from bot.turns import TurnProcessor
from store import open_store

log = logging.getLogger(__name__)


class TutorBot:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tasks = BackgroundTasks()
        self.store = open_store(settings.database_url)
        self.web_client = make_web_client(settings.slack_bot_token, settings.slack_api_url)
        self.replies = Replies(
            self.web_client,
            make_web_client(
                settings.slack_bot_token, settings.slack_api_url, wait_out_rate_limits=False
            ),
        )
        self.runtime = create_runtime(settings, self.store)
        self.telemetry = create_telemetry(
            api_key=settings.agentops_api_key, redact_content=settings.agentops_redact_content
        )
        self.quizzes = QuizFlow(store=self.store, replies=self.replies)
        self.processor = TurnProcessor(
            store=self.store,
            runtime=self.runtime,
            replies=self.replies,
            telemetry=self.telemetry,
            quizzes=self.quizzes,
            files=FileIntake(
                store=self.store,
                runtime=self.runtime,
                bot_token=settings.slack_bot_token,
                max_bytes=settings.max_file_bytes,
                file_info=self.replies.file_info,
            ),
            run_timeout=settings.run_timeout,
        )
        self.conversation = Conversation(
            store=self.store,
            processor=self.processor,
            replies=self.replies,
            runtime_name=self.runtime.name,
            tasks=self.tasks,
        )
        self.quizzes.enqueue_answers = self.conversation.enqueue_quiz_answers
        self.bolt = self._build_bolt()
        # Only HTTP mode serves /slack/events, and it always has a signing secret.
        self._verifier = SignatureVerifier(settings.slack_signing_secret or "unused")
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self.port: int | None = None

    def _build_bolt(self) -> AsyncApp:
        s = self.settings
        app = AsyncApp(
            client=self.web_client,
            signing_secret=s.slack_signing_secret or "",
            request_verification_enabled=not s.socket_mode,
            # Bolt's own lazy-listener and auto-ack rules apply; our listeners hand off fast.
            process_before_response=False,
            raise_error_for_unhandled_request=False,
        )

        @app.error
        async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
            # Reached for payloads our listeners (or Bolt's matchers) cannot make sense of:
            # a 4xx, not a 5xx Slack would keep retrying. Already-acked requests are
            # unaffected (their response went out).
            log.error("failed on a %s request: %s", (body or {}).get("type"), error, exc_info=error)
            return BoltResponse(status=400, body="bad request")

        handlers.events.register(app, self.conversation)
        handlers.commands.register(app, self.conversation, s.slash_command, self.tasks)
        handlers.quiz_actions.register(app, self.quizzes, self.replies, self.tasks)
        return app

    # -- HTTP ---------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        if not self.settings.socket_mode:  # in Socket Mode, Slack's requests come over the socket
            app.router.add_post("/slack/events", self._slack_events)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _slack_events(self, request: web.Request) -> web.Response:
        # Unsigned requests are refused before anything reads their body (Bolt checks again).
        body = (await request.read()).decode("utf-8", errors="replace")
        if not self._verifier.is_valid_request(body, dict(request.headers)):
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
        return web.json_response(
            {
                "ok": True,
                "runtime": self.runtime.name,
                "mode": "socket" if self.settings.socket_mode else "http",
                "active_threads": self.conversation.busy_threads,
            }
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, *, port: int | None = None) -> None:
        """Open the store, prepare the runtime, resume turns in flight, start serving."""
        await self.store.open()
        await self.runtime.start()
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
        log.info("listening on port %s (POST /slack/events, GET /healthz)", self.port)

    async def stop(self) -> None:
        """Stop taking requests, park the turns in flight (resumed on the next start), close."""
        if self._socket is not None:
            try:
                await asyncio.wait_for(self._socket.close_async(), timeout=5)
            except Exception:
                log.warning("socket mode did not close cleanly")
        if self._runner is not None:
            await self._runner.cleanup()
        await self.conversation.close()
        await self.processor.drain()
        self.processor.close_traces()
        await self.tasks.close(timeout=1.0)
        await self.telemetry.aclose()
        await self.runtime.aclose()
        await self.store.close()
        log.info("stopped")


async def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    bot = TutorBot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serve_http = not settings.socket_mode or settings.port_set
    await bot.start(port=settings.port if serve_http else None)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await bot.stop()
