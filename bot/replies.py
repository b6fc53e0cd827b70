"""Everything the bot says in Slack goes through here: posts, edits, ephemerals, uploads.

The ``AsyncWebClient`` carries slack_sdk's retry handlers (429 after ``Retry-After``,
connection errors once), so callers see one call and one result.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


def make_web_client(token: str, base_url: str) -> AsyncWebClient:
    """The bot's Web API client: Slack 429s are waited out and retried, bounded."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=30,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=1),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackError(Exception):
    """A Web API call failed; ``error`` is Slack's error code (``not_in_channel``…)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown_error")
    return "unknown_error"


class Replies:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """Post a message; returns its ts. Raises ``SlackError``."""
        try:
            resp = await self.client.chat_postMessage(
                channel=channel,
                text=text,
                thread_ts=thread_ts,
                blocks=list(blocks) if blocks else None,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            raise SlackError("chat.postMessage", _error_code(exc)) from exc
        return str(resp["ts"])

    async def update(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Edit a message in place. Raises ``SlackError`` (``message_not_found``…)."""
        try:
            await self.client.chat_update(
                channel=channel, ts=ts, text=text, blocks=list(blocks) if blocks is not None else []
            )
        except SlackApiError as exc:
            raise SlackError("chat.update", _error_code(exc)) from exc

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

    async def delete(self, channel: str, ts: str) -> None:
        try:
            await self.client.chat_delete(channel=channel, ts=ts)
        except SlackApiError as exc:
            log.info("could not delete %s in %s: %s", ts, channel, _error_code(exc))

    async def ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> None:
        """Best effort: a note only ``user`` sees."""
        try:
            await self.client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts
            )
        except SlackApiError as exc:
            log.info("ephemeral to %s in %s failed: %s", user, channel, _error_code(exc))

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            raise SlackError("views.open", _error_code(exc)) from exc

    async def upload(
        self,
        channel: str,
        thread_ts: str,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
    ) -> None:
        try:
            await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=filename,
                title=title or filename,
                content=content,
            )
        except SlackApiError as exc:
            raise SlackError("files.upload", _error_code(exc)) from exc
