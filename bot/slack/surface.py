"""What the conversation core needs from the place it talks in: the Slack Web API calls it
makes, and nothing else.

``bot.replies.Replies`` implements it against Slack; ``bot.console.terminal.ConsoleReplies``
against a terminal, so ``python -m bot console`` runs the very same core (turns, streaming,
quizzes) without a Slack app. Methods keep Slack's meaning: a ``ts`` names a message, a
stream is a message written in chunks (``markdown_text`` and ``task_update``), failures are
``bot.replies.SlackError`` with Slack's error code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Surface(Protocol):
    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post a message (mrkdwn ``text``, or ``blocks``); returns its ts."""
        ...

    async def update(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        """Edit a message in place."""
        ...

    async def post_markdown(
        self,
        channel: str,
        thread_ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Post standard Markdown (or ``blocks``, with ``markdown`` as their fallback)."""
        ...

    async def update_markdown(
        self,
        channel: str,
        ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        wait: bool = False,
    ) -> None:
        """Replace a message's content with standard Markdown (or ``blocks``)."""
        ...

    async def start_stream(
        self,
        channel: str,
        thread_ts: str,
        *,
        recipient_user: str | None,
        recipient_team: str | None,
        chunks: Sequence[dict[str, Any]],
    ) -> str:
        """Start a message written in chunks; returns its ts."""
        ...

    async def append_stream(
        self, channel: str, ts: str, chunks: Sequence[dict[str, Any]]
    ) -> None: ...

    async def stop_stream(
        self,
        channel: str,
        ts: str,
        *,
        chunks: Sequence[dict[str, Any]] | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None: ...

    async def set_status(
        self,
        channel: str,
        thread_ts: str,
        status: str,
        *,
        loading_messages: Sequence[str] | None = None,
    ) -> None:
        """The "is thinking…" indicator of a thread (empty ``status`` clears it)."""
        ...

    async def upload(
        self,
        channel: str,
        thread_ts: str,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
    ) -> None:
        """Share a file the model made in the thread."""
        ...

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """Open a modal (a quiz's free-response box)."""
        ...

    async def identity(self) -> tuple[str, str]:
        """The bot's own (user id, bot id)."""
        ...

    async def thread_messages(
        self,
        channel: str,
        thread_ts: str,
        *,
        before_ts: str | None = None,
        best_effort: bool = False,
    ) -> list[dict[str, Any]]:
        """A thread's messages, oldest first (the conversation before the bot joined)."""
        ...

    async def bot_replies_after(
        self, channel: str, thread_ts: str, after_ts: str
    ) -> list[dict[str, Any]]:
        """The bot's own messages in a thread after ``after_ts``, metadata included."""
        ...

    async def file_info(self, file_id: str) -> dict[str, Any]:
        """A shared file's full object."""
        ...
