"""``ConsoleReplies``: the core's Slack calls (``bot.slack.surface.Surface``), said in a
terminal.

Every message gets a Slack-like ``ts`` and is remembered, so edits show sensibly: text
added to the message just printed is printed as it comes (a stream's chunks, an edited
message growing), a message rewritten otherwise (an answer resumed after a restart) is
printed again whole. Task steps print as the timeline reads ("· Running code…", "✓ Ran
code"), the status as a transient line, files the code made are saved into a folder. Quiz
messages are not printed: they wait in ``next_quiz`` for the chat loop, which asks them as
numbered prompts and answers through the same ``QuizFlow`` calls a click makes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.console.render import (
    closed_quiz_status,
    is_quiz_message,
    message_text,
    render_blocks,
    task_line,
)
from bot.console.screen import Screen
from bot.quiz.blocks import CHECKING_TEXT
from bot.replies import SlackError

BOT_USER_ID = "UTUTORBOT"
BOT_ID = "BTUTORBOT"
NOT_STREAMING = "message_not_in_streaming_state"


class SlackTs:
    """Slack-style message timestamps ("1764470000.000100"), strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        micros = max(int(time.time() * 1_000_000), self._last + 1)
        self._last = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


@dataclass(frozen=True, slots=True)
class PostedQuiz:
    """An open quiz message, to be asked at the prompt."""

    ts: str
    blocks: list[dict[str, Any]]


@dataclass(slots=True)
class _Message:
    ts: str
    thread_ts: str | None
    quiz: bool = False
    shown: str = ""  # the text printed for it so far
    streaming: bool = False
    steps: dict[str, str] = field(default_factory=dict)  # task id -> its latest line
    held: dict[str, str] = field(default_factory=dict)  # step lines waiting for a line end
    quiz_status: str | None = None
    metadata: dict[str, Any] | None = None


class ConsoleReplies:
    """Implements ``Surface`` on a ``Screen``; ``files_dir`` receives uploaded files."""

    def __init__(self, screen: Screen, files_dir: Path, ts: SlackTs | None = None) -> None:
        self._screen = screen
        self._files_dir = files_dir
        self.ts = ts or SlackTs()
        self._messages: dict[str, _Message] = {}
        self._tail: str | None = None  # the message whose text ends the screen
        self._quizzes: deque[PostedQuiz] = deque()
        self.views: dict[str, dict[str, Any]] = {}  # opened modals, by trigger id

    # -- quizzes for the chat loop ---------------------------------------------------------

    def next_quiz(self) -> PostedQuiz | None:
        return self._quizzes.popleft() if self._quizzes else None

    def drop_quizzes(self) -> None:
        """The student moved on: the quizzes waiting to be asked are not asked."""
        self._quizzes.clear()

    def show_quiz(self, ts: str, blocks: Sequence[dict[str, Any]], *, ask: bool = True) -> None:
        """A quiz message from before this process (its ts is known to the store)."""
        self._messages[ts] = _Message(ts, None, quiz=True)
        if ask:
            self._quizzes.append(PostedQuiz(ts, list(blocks)))

    # -- posting ---------------------------------------------------------------------------

    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        ts = self.ts.next()
        if is_quiz_message(blocks):
            assert blocks is not None
            self._messages[ts] = _Message(ts, thread_ts, quiz=True, metadata=metadata)
            self._quizzes.append(PostedQuiz(ts, list(blocks)))
            return ts
        message = self._messages[ts] = _Message(ts, thread_ts, metadata=metadata)
        self._print_new(message, message_text(text, blocks))
        return ts

    async def post_markdown(
        self,
        channel: str,
        thread_ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        ts = self.ts.next()
        message = self._messages[ts] = _Message(ts, thread_ts, metadata=metadata)
        self._print_new(message, render_blocks(blocks) if blocks else markdown)
        return ts

    async def update(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        best_effort: bool = False,
    ) -> None:
        message = self._messages.get(ts)
        if message is not None and message.quiz:
            self._quiz_changed(message, blocks)
            return
        self._edit(ts, message_text(text, blocks))

    async def update_markdown(
        self,
        channel: str,
        ts: str,
        markdown: str,
        *,
        blocks: Sequence[dict[str, Any]] | None = None,
        wait: bool = False,
    ) -> None:
        message = self._messages.get(ts)
        if message is not None and message.streaming:
            raise SlackError("chat.update", "streaming_state_conflict")
        self._edit(ts, render_blocks(blocks) if blocks else markdown)

    # -- streams ---------------------------------------------------------------------------

    async def start_stream(
        self,
        channel: str,
        thread_ts: str,
        *,
        recipient_user: str | None,
        recipient_team: str | None,
        chunks: Sequence[dict[str, Any]],
    ) -> str:
        ts = self.ts.next()
        message = self._messages[ts] = _Message(ts, thread_ts, streaming=True)
        self._screen.begin()
        self._tail = ts
        self._chunks(message, chunks)
        return ts

    async def append_stream(self, channel: str, ts: str, chunks: Sequence[dict[str, Any]]) -> None:
        self._chunks(self._live(ts, "chat.appendStream"), chunks)

    async def stop_stream(
        self,
        channel: str,
        ts: str,
        *,
        chunks: Sequence[dict[str, Any]] | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        message = self._live(ts, "chat.stopStream")
        self._chunks(message, chunks or ())
        self._show_steps(message)
        message.streaming = False
        message.metadata = metadata
        under = render_blocks(blocks) if blocks else ""
        if under.strip():
            self._screen.line(under)

    def _live(self, ts: str, method: str) -> _Message:
        """The stream being written at ``ts``; Slack's refusal when there is none (a stream
        from before a restart, or one already stopped)."""
        message = self._messages.get(ts)
        if message is None or not message.streaming:
            raise SlackError(method, NOT_STREAMING)
        return message

    def _chunks(self, message: _Message, chunks: Sequence[dict[str, Any]]) -> None:
        for chunk in chunks:
            kind = chunk.get("type")
            if kind == "markdown_text":
                text = str(chunk.get("text") or "")
                if not message.shown and not text.strip():
                    continue  # a stream started with a blank placeholder
                if self._tail != message.ts and text.strip():
                    self._screen.begin()
                # Steps held back show at the first line end.
                head, newline, rest = text.rpartition("\n") if message.held else ("", "", text)
                self._write_text(message, head + newline)
                if newline:
                    self._show_steps(message)
                self._write_text(message, rest)
            elif kind == "task_update":
                step = str(chunk.get("id") or "")
                line = task_line(chunk)
                if message.steps.get(step) != line:
                    message.steps[step] = line
                    message.held[step] = line
                    if not self._mid_line(message):
                        self._show_steps(message)

    def _write_text(self, message: _Message, text: str) -> None:
        if text:
            self._screen.write(text)
            message.shown += text
            self._tail = message.ts

    def _mid_line(self, message: _Message) -> bool:
        """The message's text stops mid-line on screen: a step line would cut into it (Slack
        shows steps apart from the text; here they wait for the line's end)."""
        shown = message.shown
        return self._tail == message.ts and bool(shown) and not shown.endswith("\n")

    def _show_steps(self, message: _Message) -> None:
        for line in message.held.values():
            self._screen.line(line, "dim")
        message.held.clear()

    # -- status, files, modals ---------------------------------------------------------------

    async def set_status(
        self,
        channel: str,
        thread_ts: str,
        status: str,
        *,
        loading_messages: Sequence[str] | None = None,
    ) -> None:
        if status:
            self._screen.status(f"tutorbot {status}")
        else:
            self._screen.clear_status()

    async def upload(
        self,
        channel: str,
        thread_ts: str,
        filename: str,
        content: bytes,
        *,
        title: str | None = None,
    ) -> None:
        path = await asyncio.to_thread(_save, self._files_dir, filename, content)
        shown = _relative(path)
        self._tail = None
        self._screen.line(f"📎 {title or filename}: saved to {shown}")

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        self.views[trigger_id] = view

    # -- reading -------------------------------------------------------------------------------

    async def identity(self) -> tuple[str, str]:
        return BOT_USER_ID, BOT_ID

    async def thread_messages(
        self,
        channel: str,
        thread_ts: str,
        *,
        before_ts: str | None = None,
        best_effort: bool = False,
    ) -> list[dict[str, Any]]:
        # The console's conversation has no messages from before the bot was in it.
        return []

    async def bot_replies_after(
        self, channel: str, thread_ts: str, after_ts: str
    ) -> list[dict[str, Any]]:
        """What this process printed in the thread after ``after_ts`` (earlier runs' output
        is gone with their process)."""
        return [
            {
                "ts": m.ts,
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "text": m.shown,
                "metadata": m.metadata or {},
            }
            for m in self._messages.values()
            if m.thread_ts == thread_ts and _later(m.ts, after_ts)
        ]

    async def file_info(self, file_id: str) -> dict[str, Any]:
        return {}

    # -- printing messages -------------------------------------------------------------------

    def _print_new(self, message: _Message, text: str) -> None:
        shown = text if text.strip() else ""
        message.shown = shown
        if shown:
            self._screen.begin()
            self._screen.write(shown)
            self._tail = message.ts

    def _edit(self, ts: str, text: str) -> None:
        message = self._messages.get(ts)
        if message is None:  # written by an earlier process: shown again whole
            message = self._messages[ts] = _Message(ts, None)
            self._print_new(message, text)
            return
        shown = text if text.strip() else ""
        if shown == message.shown:
            return
        if self._tail == ts and shown.startswith(message.shown):
            self._screen.write(shown[len(message.shown) :])
            message.shown = shown
            return
        self._print_new(message, shown)

    def _quiz_changed(self, message: _Message, blocks: Sequence[dict[str, Any]] | None) -> None:
        """A quiz message changed: silent while it takes answers; its closing status once."""
        status = closed_quiz_status(blocks)
        # "Checking them…" is what the status line says next: not printed twice.
        if status and status != CHECKING_TEXT and status != message.quiz_status:
            message.quiz_status = status
            title = render_blocks([b for b in blocks or () if b.get("type") == "header"])
            self._tail = None
            self._screen.line(f"{title}: {status}" if title else status, "dim")


def _later(ts: str, after: str) -> bool:
    try:
        return float(ts) > float(after)
    except ValueError:
        return True


def _save(folder: Path, filename: str, content: bytes) -> Path:
    """Write ``content`` into ``folder`` under ``filename``'s last part, never over a file."""
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(filename.replace("\\", "/")).name.strip() or "file"
    stem, suffix = Path(name).stem, Path(name).suffix
    path = folder / name
    number = 2
    while path.exists():
        path = folder / f"{stem} ({number}){suffix}"
        number += 1
    path.write_bytes(content)
    return path


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
