"""Everything the bot says in Slack goes through here: posts, edits, ephemerals, uploads.

The ``AsyncWebClient`` carries slack_sdk's retry handlers (429 after ``Retry-After``,
connection errors once), so callers see one call and one result.
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

log = logging.getLogger(__name__)


MAX_RETRY_AFTER = 120.0
# A post whose connection dropped may still have gone through: retrying could post twice.
_NOT_RETRIED_ON_CONNECTION_ERROR = (
    "chat.postMessage",
    "chat.postEphemeral",
    "files.completeUploadExternal",
)


class _ConnectionErrorRetry(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, minus the calls a retry could duplicate."""

    async def _can_retry_async(
        self, *, state: Any, request: Any, response: Any = None, error: Exception | None = None
    ) -> bool:
        if str(getattr(request, "url", "")).endswith(_NOT_RETRIED_ON_CONNECTION_ERROR):
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


def make_web_client(
    token: str, base_url: str, *, wait_out_rate_limits: bool = True
) -> AsyncWebClient:
    """The bot's Web API client: Slack 429s are waited out (``Retry-After``) and retried.

    ``wait_out_rate_limits=False`` gives a client for best-effort calls (progress updates)
    that should rather be skipped than delay the answer.
    """
    handlers: list[AsyncRetryHandler] = [_ConnectionErrorRetry(max_retry_count=1)]
    if wait_out_rate_limits:
        handlers += [
            _RateLimitRetry(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ]
    return AsyncWebClient(token=token, base_url=base_url, timeout=30, retry_handlers=handlers)


class SlackError(Exception):
    """A Web API call failed; ``error`` is Slack's error code (``not_in_channel``…)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


_BLOCKS_REFUSED = ("invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long")


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown_error")
    return "unknown_error"


class Replies:
    def __init__(
        self, client: AsyncWebClient, progress_client: AsyncWebClient | None = None
    ) -> None:
        self.client = client
        self._progress_client = progress_client or client
        self._identity: tuple[str, str] | None = None

    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """Post a message; returns its ts. Raises ``SlackError``.

        If Slack refuses the blocks (``invalid_blocks``), the text alone is posted instead:
        a plainer message beats none.
        """
        try:
            async with _slack_call("chat.postMessage"):
                resp = await self.client.chat_postMessage(
                    channel=channel,
                    text=text,
                    thread_ts=thread_ts,
                    blocks=list(blocks) if blocks else None,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except SlackError as exc:
            if not blocks or exc.error not in _BLOCKS_REFUSED:
                raise
            log.warning("Slack refused blocks (%s) in %s; posting text only", exc.error, channel)
            return await self.post(channel, text, thread_ts=thread_ts)
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
                    channel=channel, ts=ts, text=text, blocks=list(blocks) if blocks else []
                )
        except SlackError as exc:
            if not blocks or exc.error not in _BLOCKS_REFUSED:
                raise
            log.warning(
                "Slack refused blocks (%s) in %s; updating with text only", exc.error, channel
            )
            await self.update(channel, ts, text, best_effort=best_effort)

    async def replace_or_post(
        self,
        channel: str,
        thread_ts: str,
        placeholder_ts: str | None,
        text: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """Turn the "working…" message into ``text``; post anew if it cannot be edited."""
        if placeholder_ts is not None:
            try:
                await self.update(channel, placeholder_ts, text, blocks=blocks)
                return placeholder_ts
            except SlackError as exc:
                log.info(
                    "could not edit %s in %s (%s); posting instead",
                    placeholder_ts,
                    channel,
                    exc.error,
                )
        return await self.post(channel, text, thread_ts=thread_ts, blocks=blocks)

    async def identity(self) -> tuple[str, str]:
        """The bot's own (user id, bot id), asked once."""
        if self._identity is None:
            async with _slack_call("auth.test"):
                resp = await self.client.auth_test()
            self._identity = (str(resp.get("user_id") or ""), str(resp.get("bot_id") or ""))
        return self._identity

    async def thread_messages(
        self, channel: str, thread_ts: str, *, limit: int = 50, best_effort: bool = False
    ) -> list[dict[str, Any]]:
        """The first messages of a thread, parent included, oldest first."""
        client = self._progress_client if best_effort else self.client
        async with _slack_call("conversations.replies"):
            resp = await client.conversations_replies(channel=channel, ts=thread_ts, limit=limit)
        messages = resp.get("messages") or []
        return [m for m in messages if isinstance(m, dict)]

    async def file_info(self, file_id: str) -> dict[str, Any]:
        """The full file object (events sometimes carry only a stub)."""
        async with _slack_call("files.info"):
            resp = await self.client.files_info(file=file_id)
        file = resp.get("file")
        return dict(file) if isinstance(file, dict) else {}

    async def delete(self, channel: str, ts: str) -> None:
        """Best effort (the message may already be gone)."""
        try:
            async with _slack_call("chat.delete"):
                await self.client.chat_delete(channel=channel, ts=ts)
        except SlackError as exc:
            log.info("could not delete %s in %s: %s", ts, channel, exc.error)

    async def ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> None:
        """Best effort: a note only ``user`` sees."""
        try:
            async with _slack_call("chat.postEphemeral"):
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=text, thread_ts=thread_ts
                )
        except SlackError as exc:
            log.info("ephemeral to %s in %s failed: %s", user, channel, exc.error)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        async with _slack_call("views.open"):
            await self.client.views_open(trigger_id=trigger_id, view=view)

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
        raise SlackError(method, _error_code(exc)) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SlackError(method, "connection_error") from exc
    except ValueError as exc:  # a body that is not Slack's JSON (a proxy's error page…)
        raise SlackError(method, "unreadable_response") from exc
