"""Everything the bot says in Slack goes through here: posts, edits, ephemerals, uploads.

The ``AsyncWebClient`` carries slack_sdk's retry handlers (429 after ``Retry-After``,
connection errors once), so callers see one call and one result.

With one workspace (``SLACK_BOT_TOKEN``) every call uses the client's token. With many (the
OAuth install flow) each call carries the token of the workspace in
``bot.workspaces.current_team``; see ``Replies``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.workspaces import WorkspaceTokens, current_team
from store.slack_oauth import InstalledBot

log = logging.getLogger(__name__)


MAX_RETRY_AFTER = 120.0
# Reading a thread: Slack recommends at most 200 messages a page; conversations.replies is
# Tier 3 (1/min for commercially distributed apps), so a few pages at most.
THREAD_PAGE = 200
THREAD_PAGES = 5
# A call whose connection dropped may still have gone through: retrying could post (or
# append) twice. These are never retried blindly; the caller looks before acting again.
_NOT_RETRIED = (
    "chat.postMessage",
    "chat.postEphemeral",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "files.completeUploadExternal",
)


class _ConnectionErrorRetry(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, minus the calls a retry could duplicate."""

    async def _can_retry_async(
        self, *, state: Any, request: Any, response: Any = None, error: Exception | None = None
    ) -> bool:
        if str(getattr(request, "url", "")).endswith(_NOT_RETRIED):
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


class _RateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 retry, waiting the whole ``Retry-After``.

    slack_sdk 3.48's async handler reads only the header's first character (for the
    aiohttp client the value is a string, not a list): "30" would wait 3 s and hit the
    limit again.
    """

    async def prepare_for_next_attempt_async(
        self, *, state: Any, request: Any, response: Any = None, error: Exception | None = None
    ) -> None:
        if response is None:
            raise error or RuntimeError("rate-limit retry without a response")
        state.next_attempt_requested = True
        await asyncio.sleep(retry_after_seconds(response.headers) + random.random())
        state.increment_current_attempt()


class _ServerErrorRetry(AsyncServerErrorRetryHandler):
    """slack_sdk's 5xx retry, minus the calls a retry could duplicate (a 5xx may come
    after Slack posted the message)."""

    async def _can_retry_async(
        self, *, state: Any, request: Any, response: Any = None, error: Exception | None = None
    ) -> bool:
        if str(getattr(request, "url", "")).endswith(_NOT_RETRIED):
            return False
        return await super()._can_retry_async(
            state=state, request=request, response=response, error=error
        )


def retry_after_seconds(headers: Mapping[str, Any]) -> float:
    """Slack's ``Retry-After`` in seconds (1 when missing or unreadable), at most 120."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return min(max(float(str(raw).strip()), 0.0), MAX_RETRY_AFTER)
            except ValueError:
                return 1.0
    return 1.0


def make_http_session() -> aiohttp.ClientSession:
    """One connection pool for every Slack call: slack_sdk otherwise opens a session (and
    a TCP connection) per call, a tenth of the bot's CPU under load. Closed at shutdown."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30),
        timeout=aiohttp.ClientTimeout(total=30),
    )


def make_web_client(
    token: str | None,
    base_url: str,
    *,
    wait_out_rate_limits: bool = True,
    session: aiohttp.ClientSession | None = None,
) -> AsyncWebClient:
    """The bot's Web API client: Slack 429s are waited out (``Retry-After``) and retried.

    ``wait_out_rate_limits=False`` gives a client for best-effort calls (progress updates)
    that should rather be skipped than delay the answer. ``token`` None: a client for many
    workspaces, whose calls each name their token.
    """
    handlers: list[AsyncRetryHandler] = [_ConnectionErrorRetry(max_retry_count=1)]
    if wait_out_rate_limits:
        handlers += [
            _RateLimitRetry(max_retry_count=5),
            _ServerErrorRetry(max_retry_count=2),
        ]
    return AsyncWebClient(
        token=token, base_url=base_url, timeout=30, retry_handlers=handlers, session=session
    )


class SlackError(Exception):
    """A Web API call failed; ``error`` is Slack's error code (``not_in_channel``…).

    ``connection_error`` and ``server_error`` mean the call may or may not have taken
    effect; ``ratelimited`` comes with ``retry_after`` seconds.
    """

    def __init__(self, method: str, error: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error
        self.retry_after = retry_after

    @property
    def ambiguous(self) -> bool:
        """The call may have taken effect although it failed."""
        return self.error in ("connection_error", "server_error")


_BLOCKS_REFUSED = ("invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long")


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    status = getattr(exc.response, "status_code", 200)
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return "server_error"
    return "unknown_error"


class NotInstalled(SlackError):
    """The workspace of a call has no installation (never installed, uninstalled, tokens
    revoked): nothing can be said there, and nothing was sent to Slack."""

    def __init__(self, method: str, team: str | None) -> None:
        super().__init__(method, "not_installed")
        self.team = team


class Replies:
    """Slack's Web API as the core uses it.

    ``tokens`` (many workspaces): each call carries the bot token of the workspace in
    ``bot.workspaces.current_team``, a context variable rather than an argument, as Bolt
    keeps a request's context: the Bolt middleware sets it for a request, the worker for a
    turn, and tasks spawned from either inherit it, so the core's many call sites never pass
    a team along and cannot pass the wrong one. A workspace without an installation gets
    ``NotInstalled`` before anything is sent. Without ``tokens`` (one workspace) the client's
    own token is used and nothing is looked up.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        progress_client: AsyncWebClient | None = None,
        *,
        tokens: WorkspaceTokens | None = None,
    ) -> None:
        self.client = client
        self._progress_client = progress_client or client
        self._tokens = tokens
        self._identity: tuple[str, str] | None = None

    async def _bot(self, method: str) -> InstalledBot:
        """The current workspace's bot; ``NotInstalled`` if it has none."""
        assert self._tokens is not None
        team = current_team.get()
        bot = await self._tokens.bot(team) if team else None
        if bot is None:
            log.info("%s skipped: workspace %s has no installation", method, team or "(unknown)")
            raise NotInstalled(method, team)
        return bot

    async def _auth(self, method: str) -> dict[str, Any]:
        """The token argument of a call: the current workspace's, or none (the client's)."""
        if self._tokens is None:
            return {}
        return {"token": (await self._bot(method)).token}

    async def token(self) -> str:
        """The bot token Slack calls use now (file downloads send it to Slack's file hosts)."""
        if self._tokens is None:
            return str(self.client.token or "")
        return (await self._bot("files download")).token

    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post a message; returns its ts. Raises ``SlackError``.

        If Slack refuses the blocks (``invalid_blocks``), the text alone is posted instead:
        a plainer message beats none.
        """
        try:
            async with _slack_call("chat.postMessage"):
                resp = await self.client.chat_postMessage(
                    **await self._auth("chat.postMessage"),
                    channel=channel,
                    text=text,
                    thread_ts=thread_ts,
                    blocks=list(blocks) if blocks else None,
                    metadata=metadata,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except SlackError as exc:
            if not blocks or exc.error not in _BLOCKS_REFUSED:
                raise
            log.warning("Slack refused blocks (%s) in %s; posting text only", exc.error, channel)
            return await self.post(channel, text, thread_ts=thread_ts, metadata=metadata)
        return str(resp["ts"])

    async def update(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        """Edit a message in place. Raises ``SlackError`` (``message_not_found``…).

        ``best_effort`` (progress updates): a rate limit fails at once instead of waiting.
        """
        client = self._progress_client if best_effort else self.client
        try:
            async with _slack_call("chat.update"):
                await client.chat_update(
                    **await self._auth("chat.update"),
                    channel=channel,
                    ts=ts,
                    text=text,
                    blocks=list(blocks) if blocks else [],
                )
        except SlackError as exc:
            if not blocks or exc.error not in _BLOCKS_REFUSED:
                raise
            log.warning(
                "Slack refused blocks (%s) in %s; updating with text only", exc.error, channel
            )
            await self.update(channel, ts, text, best_effort=best_effort)

    # -- answers as they are written (streams), the status indicator --------------------

    async def post_markdown(
        self,
        channel: str,
        thread_ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post standard Markdown (Slack renders it); with ``blocks``, those are shown and
        ``markdown`` is the notification text. Never retried blindly (see SlackError)."""
        args: dict[str, Any] = {"channel": channel, "thread_ts": thread_ts}
        if blocks:
            args["blocks"] = list(blocks)
            args["text"] = markdown[:3000]
        else:
            args["markdown_text"] = markdown
        if metadata is not None:
            args["metadata"] = metadata
        async with _slack_call("chat.postMessage"):
            resp = await self.client.chat_postMessage(
                **await self._auth("chat.postMessage"),
                **args,
                unfurl_links=False,
                unfurl_media=False,
            )
        return str(resp["ts"])

    async def update_markdown(
        self,
        channel: str,
        ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        wait: bool = False,
    ) -> None:
        """Replace a message's content with standard Markdown (or ``blocks``).

        ``wait``: wait out rate limits (the final edit of an answer) instead of failing.
        """
        client = self.client if wait else self._progress_client
        args: dict[str, Any] = {"channel": channel, "ts": ts}
        if blocks:
            args["blocks"] = list(blocks)
            args["text"] = markdown[:3000]
        else:
            args["markdown_text"] = markdown
        async with _slack_call("chat.update"):
            await client.chat_update(**await self._auth("chat.update"), **args)

    async def start_stream(
        self,
        channel: str,
        thread_ts: str,
        *,
        recipient_user: str | None,
        recipient_team: str | None,
        chunks: Sequence[dict[str, Any]],
    ) -> str:
        """``chat.startStream`` in chunks mode; returns the stream message's ts."""
        async with _slack_call("chat.startStream"):
            resp = await self._progress_client.chat_startStream(
                **await self._auth("chat.startStream"),
                channel=channel,
                thread_ts=thread_ts,
                recipient_user_id=recipient_user,
                recipient_team_id=recipient_team,
                chunks=list(chunks),
                task_display_mode="timeline",
            )
        return str(resp["ts"])

    async def append_stream(self, channel: str, ts: str, chunks: Sequence[dict[str, Any]]) -> None:
        async with _slack_call("chat.appendStream"):
            await self._progress_client.chat_appendStream(
                **await self._auth("chat.appendStream"), channel=channel, ts=ts, chunks=list(chunks)
            )

    async def stop_stream(
        self,
        channel: str,
        ts: str,
        *,
        chunks: Sequence[dict[str, Any]] | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        async with _slack_call("chat.stopStream"):
            await self._progress_client.chat_stopStream(
                **await self._auth("chat.stopStream"),
                channel=channel,
                ts=ts,
                chunks=list(chunks) if chunks else None,
                blocks=list(blocks) if blocks else None,
                metadata=metadata,
            )

    async def set_status(
        self,
        channel: str,
        thread_ts: str,
        status: str,
        *,
        loading_messages: Sequence[str] | None = None,
    ) -> None:
        """The "is thinking…" indicator under a thread (empty ``status`` clears it)."""
        async with _slack_call("assistant.threads.setStatus"):
            await self._progress_client.assistant_threads_setStatus(
                **await self._auth("assistant.threads.setStatus"),
                channel_id=channel,
                thread_ts=thread_ts,
                status=status,
                loading_messages=list(loading_messages) if loading_messages else None,
            )

    async def bot_replies_after(
        self, channel: str, thread_ts: str, after_ts: str
    ) -> list[dict[str, Any]]:
        """The bot's messages in a thread newer than ``after_ts``, metadata included: the
        look before acting again after a call that may have taken effect."""
        bot_user_id, bot_id = await self.identity()
        async with _slack_call("conversations.replies"):
            resp = await self.client.conversations_replies(
                **await self._auth("conversations.replies"),
                channel=channel,
                ts=thread_ts,
                oldest=after_ts,
                inclusive=False,
                include_all_metadata=True,
                limit=100,
            )
        return [
            m
            for m in resp.get("messages") or []
            if isinstance(m, dict)
            and m.get("ts") != thread_ts
            and ((bot_id and m.get("bot_id") == bot_id) or m.get("user") == bot_user_id)
        ]

    async def identity(self) -> tuple[str, str]:
        """The bot's own (user id, bot id): asked once, or the current workspace's bot as
        it was installed."""
        if self._tokens is not None:
            bot = await self._bot("auth.test")
            return bot.user_id, bot.bot_id
        if self._identity is None:
            async with _slack_call("auth.test"):
                resp = await self.client.auth_test()
            self._identity = (str(resp.get("user_id") or ""), str(resp.get("bot_id") or ""))
        return self._identity

    async def thread_messages(
        self,
        channel: str,
        thread_ts: str,
        *,
        before_ts: str | None = None,
        best_effort: bool = False,
    ) -> list[dict[str, Any]]:
        """A thread's messages, parent included, oldest first: the latest ones are in it.

        Slack pages a thread from its start, so the cursor is followed to the end (or to
        ``before_ts``, exclusive, when given), at most ``THREAD_PAGES`` pages of
        ``THREAD_PAGE``: a mention deep in a long thread sees the messages just before it.
        """
        client = self._progress_client if best_effort else self.client
        by_ts: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        for _ in range(THREAD_PAGES):
            async with _slack_call("conversations.replies"):
                resp = await client.conversations_replies(
                    **await self._auth("conversations.replies"),
                    channel=channel,
                    ts=thread_ts,
                    limit=THREAD_PAGE,
                    cursor=cursor,
                    latest=before_ts,
                    inclusive=False if before_ts else None,
                    include_all_metadata=True,  # the bot's greeting is known by its metadata
                )
            for message in resp.get("messages") or []:
                # Keyed by ts (Slack may repeat the parent on later pages); pages are in order.
                if isinstance(message, dict):
                    by_ts[str(message.get("ts") or "")] = message
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        else:
            log.info("thread %s in %s has more than %s messages", thread_ts, channel, len(by_ts))
        return list(by_ts.values())

    async def file_info(self, file_id: str) -> dict[str, Any]:
        """The full file object (events sometimes carry only a stub)."""
        async with _slack_call("files.info"):
            resp = await self.client.files_info(**await self._auth("files.info"), file=file_id)
        file = resp.get("file")
        return dict(file) if isinstance(file, dict) else {}

    async def delete(self, channel: str, ts: str) -> None:
        """Best effort (the message may already be gone)."""
        try:
            async with _slack_call("chat.delete"):
                await self.client.chat_delete(
                    **await self._auth("chat.delete"), channel=channel, ts=ts
                )
        except SlackError as exc:
            log.info("could not delete %s in %s: %s", ts, channel, exc.error)

    async def ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> None:
        """Best effort: a note only ``user`` sees."""
        try:
            async with _slack_call("chat.postEphemeral"):
                await self.client.chat_postEphemeral(
                    **await self._auth("chat.postEphemeral"),
                    channel=channel,
                    user=user,
                    text=text,
                    thread_ts=thread_ts,
                )
        except SlackError as exc:
            log.info("ephemeral to %s in %s failed: %s", user, channel, exc.error)

    # -- the agent app's surfaces (best effort: none of these may cost an answer) --------

    async def set_suggested_prompts(
        self,
        channel: str,
        prompts: Sequence[dict[str, str]],
        *,
        thread_ts: str | None = None,
        title: str | None = None,
    ) -> bool:
        """The prompt chips of the Messages tab (no ``thread_ts``: an agent app's call with
        one "silently fails") or of a legacy assistant-container thread (with it)."""
        try:
            async with _slack_call("assistant.threads.setSuggestedPrompts"):
                await self.client.assistant_threads_setSuggestedPrompts(
                    **await self._auth("assistant.threads.setSuggestedPrompts"),
                    channel_id=channel,
                    thread_ts=thread_ts,
                    prompts=list(prompts),
                    title=title,
                )
        except SlackError as exc:
            log.info("suggested prompts in %s not set: %s", channel, exc.error)
            return False
        return True

    async def set_title(self, channel: str, thread_ts: str, title: str) -> bool:
        """A DM conversation's title in the agent's history (bridged to its session)."""
        try:
            async with _slack_call("assistant.threads.setTitle"):
                await self.client.assistant_threads_setTitle(
                    **await self._auth("assistant.threads.setTitle"),
                    channel_id=channel,
                    thread_ts=thread_ts,
                    title=title,
                )
        except SlackError as exc:
            log.info("title of %s in %s not set: %s", thread_ts, channel, exc.error)
            return False
        return True

    async def channel_name(self, channel: str) -> str | None:
        """A channel's name (``conversations.info``), or None when the bot may not see it."""
        try:
            async with _slack_call("conversations.info"):
                resp = await self.client.conversations_info(
                    **await self._auth("conversations.info"), channel=channel
                )
        except SlackError as exc:
            log.info("no name for channel %s: %s", channel, exc.error)
            return None
        name = (resp.get("channel") or {}).get("name")
        return name if isinstance(name, str) and name else None

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        async with _slack_call("views.open"):
            await self.client.views_open(
                **await self._auth("views.open"), trigger_id=trigger_id, view=view
            )

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Show ``view`` as ``user``'s Home tab of the app (``views.publish``)."""
        async with _slack_call("views.publish"):
            await self.client.views_publish(
                **await self._auth("views.publish"), user_id=user, view=view
            )

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A link to a message (``chat.getPermalink``); None when Slack gives none."""
        async with _slack_call("chat.getPermalink"):
            resp = await self.client.chat_getPermalink(
                **await self._auth("chat.getPermalink"), channel=channel, message_ts=ts
            )
        link = resp.get("permalink")
        return link if isinstance(link, str) and link else None

    async def upload(
        self,
        channel: str,
        thread_ts: str,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
    ) -> None:
        async with _slack_call("files.upload"):
            await self.client.files_upload_v2(
                **await self._auth("files.upload"),
                channel=channel,
                thread_ts=thread_ts,
                filename=filename,
                title=title or filename,
                content=content,
            )


@asynccontextmanager
async def _slack_call(method: str) -> AsyncIterator[None]:
    """Slack's refusals and dropped connections, as one ``SlackError`` with a code."""
    try:
        yield
    except SlackApiError as exc:
        code = _error_code(exc)
        retry_after = None
        if code == "ratelimited" or getattr(exc.response, "status_code", 200) == 429:
            code = "ratelimited"
            retry_after = retry_after_seconds(getattr(exc.response, "headers", None) or {})
        elif getattr(exc.response, "status_code", 200) >= 500:
            code = "server_error"
        raise SlackError(method, code, retry_after=retry_after) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SlackError(method, "connection_error") from exc
    except ValueError as exc:  # a body that is not Slack's JSON (a proxy's error page…)
        raise SlackError(method, "unreadable_response") from exc
