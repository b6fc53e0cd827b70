"""``python -m bot console``: the tutor in a terminal, on the same core as in Slack.

The terminal is one more surface (``ConsoleReplies``) around the very same ``Core``: each
line typed becomes an ``IncomingMessage`` in the console's own thread, worked by the same
turn runner, runtime and store, and the chat waits until that thread's worker is idle
before it prompts again. Quizzes the core posts are asked as numbered prompts and answered
through ``QuizFlow`` exactly as Slack's clicks are, so the answers reach the model as the
``display_quiz`` output. The thread is remembered in the store's settings, so the next run
continues the conversation (``--new`` starts another). Only the console's thread is worked
here: a database shared with a Slack bot keeps its Slack threads to that bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config import ConfigError, Settings, load_console_settings
from bot.console.lines import LineReader
from bot.console.quiz import (
    Entry,
    QuizPrompt,
    QuizQuestion,
    Typed,
    parse_choice,
    parse_free,
    read_quiz,
)
from bot.console.render import plain_mrkdwn
from bot.console.screen import Screen, ScreenLog
from bot.console.terminal import ConsoleReplies, PostedQuiz
from bot.conversation import IncomingMessage
from bot.core.assembly import CONSOLE_TEAM, Core
from bot.domain import QuizStatus, Thread, ThreadKey, TurnStatus
from bot.quiz.answers import validate_free_answer
from bot.quiz.blocks import closed_quiz_message, quiz_message
from bot.runtime.base import RuntimeError_
from bot.slack.budget import SlackBudget
from store.base import StoreError

TEAM = CONSOLE_TEAM
CHANNEL = "console"
STUDENT = "console-student"
THREAD_SETTING = "console_thread"
FILES_DIR = Path("tutorbot-files")
PROMPT = "you> "
LEAVE = ("exit", "quit")
QUIZ_HELP = "Answer by number; type your answer to open questions. /skip leaves the quiz."
SKIPPED = "The quiz stays open; your next message moves on from it."
HELD = "tutorbot is waiting: another tutorbot process is working on this conversation…"
UNDONE = (TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.POSTING)
LEASE_RETRY = 2.0  # seconds between looks at a conversation another process holds


class _Leave(Exception):
    """The student left in the middle of a quiz (Ctrl-D, exit)."""


class ConsoleApp:
    def __init__(
        self,
        settings: Settings,
        *,
        screen: Screen,
        reader: LineReader,
        files_dir: Path = FILES_DIR,
        new: bool = False,
    ) -> None:
        self.settings = settings
        self.screen = screen
        self.reader = reader
        self.replies = ConsoleReplies(screen, files_dir)
        # No Slack rate limits to share: every answer streams.
        self.core = Core(settings, self.replies, budget=SlackBudget(limits={}))
        self._new = new
        self.thread_ts = ""

    @property
    def key(self) -> ThreadKey:
        return ThreadKey(TEAM, CHANNEL, self.thread_ts)

    async def open(self) -> None:
        """Open the core and pick the conversation: the last one, or a new one."""
        await self.core.open()
        # Heartbeats (its leases must hold), but no sweeping: the console works only its
        # own conversation, never a Slack thread that shares the database.
        await self.core.conversation.start(sweep=False)
        store = self.core.store
        stored = await store.get_setting(THREAD_SETTING)
        if self._new or not stored:
            self.thread_ts = self.replies.ts.next()
            await store.set_setting(THREAD_SETTING, self.thread_ts)
        else:
            self.thread_ts = stored

    async def close(self) -> None:
        """As ``TutorBot.stop``: a turn in flight is parked and resumed by the next run."""
        await self.core.close()

    # -- the chat ------------------------------------------------------------------------------

    async def chat(self) -> None:
        """Read, answer, repeat, until the student leaves (Ctrl-D, "exit")."""
        try:
            typed = await self._resume()
            while True:
                line = typed if typed is not None else await self._ask_line(PROMPT)
                typed = None
                if line is None or line.strip().lower() in LEAVE:
                    return
                if not line.strip():
                    continue
                await self._send(line)
                typed = await self._settle()
        except _Leave:
            return

    async def _resume(self) -> str | None:
        """Greet; pick up what the last run left: a turn in flight, quizzes still open."""
        store = self.core.store
        thread = await store.get_thread(self.key)
        self._greet(thread)
        if thread is None:
            return None
        waiting = await store.list_quizzes(
            thread_id=thread.id, statuses=[QuizStatus.OPEN, QuizStatus.ANSWERED]
        )
        for quiz in waiting:
            if quiz.message_ts is None:
                continue
            if quiz.status is QuizStatus.OPEN:
                self.replies.show_quiz(quiz.message_ts, quiz_message(quiz)[1])
            else:
                self.replies.show_quiz(quiz.message_ts, closed_quiz_message(quiz)[1], ask=False)
        self.core.conversation.kick(thread.id)
        return await self._settle()

    def _greet(self, thread: Thread | None) -> None:
        s = self.settings
        where = f" at {s.openai_base_url}" if s.openai_base_url else ""
        self.screen.line(f"tutorbot console · {s.openai_model} ({s.runtime}{where})", "dim")
        if thread is None:
            self.screen.line(
                "Ask anything, e.g. “Solve 3x + 11 = 14” or “Quiz me on fractions”. "
                "Ctrl-D or exit leaves.",
                "dim",
            )
        else:
            started = thread.created_at.astimezone().strftime("%d %b %H:%M")
            self.screen.line(
                f"Continuing the conversation from {started} (--new starts another). "
                "Ctrl-D or exit leaves.",
                "dim",
            )

    async def _send(self, text: str) -> None:
        """The line as a message in the console's thread; its first one opens the thread."""
        thread = await self.core.store.get_thread(self.key)
        ts = self.thread_ts if thread is None else self.replies.ts.next()
        await self.core.conversation.receive_message(
            IncomingMessage(
                team=TEAM,
                channel=CHANNEL,
                user=STUDENT,
                text=text,
                ts=ts,
                thread_ts=self.thread_ts,
                addressed=True,
            )
        )

    async def _settle(self) -> str | None:
        """Wait until the thread's turns are done, then ask the quizzes they posted.

        Returns a message typed instead of an answer: it goes to the tutor next, which skips
        the quiz as a new message in Slack does.
        """
        while True:
            await self.core.tasks.wait_idle()
            if await self._held_elsewhere():
                continue
            self.screen.clear_status()
            posted = self.replies.next_quiz()
            if posted is None:
                return None
            entry = await self._ask_quiz(posted)
            if entry is None:
                continue  # submitted: the feedback is on its way
            self.replies.drop_quizzes()
            if entry.kind is Typed.LEAVE:
                raise _Leave()
            if entry.kind is Typed.MESSAGE:
                return entry.text
            self.screen.line(SKIPPED, "dim")
            return None

    async def _held_elsewhere(self) -> bool:
        """Turns left undone although the worker is idle: another process holds the
        conversation's lease (a second console on it, or one killed less than a lease ago).
        Wait a little, then try again, as the Slack bot's sweeper would."""
        store = self.core.store
        thread = await store.get_thread(self.key)
        if thread is None:
            return False
        undone = await store.list_turns(statuses=UNDONE, thread_id=thread.id)
        if not undone:
            return False
        self.screen.status(HELD)
        await asyncio.sleep(LEASE_RETRY)
        self.core.conversation.kick(thread.id)
        return True

    async def _ask_line(self, prompt: str, *, gap: bool = True) -> str | None:
        self.screen.prompt(prompt, gap=gap)
        line = await self.reader.read()
        if line is not None:
            self.screen.typed(None if self.reader.echoes else line)
        return line

    # -- quizzes -------------------------------------------------------------------------------

    async def _ask_quiz(self, posted: PostedQuiz) -> Entry | None:
        """Ask every question, then submit. None once submitted (or when the quiz no longer
        takes answers); otherwise what the student did instead (skip, a message, leave)."""
        prompt = read_quiz(posted.blocks)
        if prompt is None:
            return None
        s = self.screen
        s.begin()
        s.line(f"📝 {prompt.title}", "bold")
        s.line(QUIZ_HELP, "dim")
        for question in prompt.questions:
            s.line("")
            s.line(f"{question.index + 1}. {question.text}")
            if question.free_response:
                entry = await self._answer_free(prompt, question, posted.ts)
            else:
                for number, choice in enumerate(question.choices, start=1):
                    s.line(f"   {number}) {choice}")
                entry = await self._answer_choice(prompt, question, posted.ts)
            if entry is not None:
                return entry
        note = await self.core.quizzes.submit(
            prompt.quiz_id, user=STUDENT, channel=CHANNEL, message_ts=posted.ts
        )
        if note:
            s.line(plain_mrkdwn(note), "dim")
        return None

    async def _answer_choice(
        self, prompt: QuizPrompt, question: QuizQuestion, message_ts: str
    ) -> Entry | None:
        count = len(question.choices)
        while True:
            line = await self._ask_line(f"choice (1-{count})> ", gap=False)
            entry = Entry(Typed.LEAVE) if line is None else parse_choice(line, count)
            if entry.kind is Typed.AGAIN:
                self.screen.line(f"Type a number from 1 to {count}, or /skip.", "dim")
                continue
            if entry.kind is not Typed.CHOICE or entry.choice is None:
                return entry
            note = await self.core.quizzes.choose(
                prompt.quiz_id,
                question.index,
                entry.choice,
                user=STUDENT,
                channel=CHANNEL,
                message_ts=message_ts,
            )
            if note:  # the quiz no longer takes answers
                self.screen.line(plain_mrkdwn(note), "dim")
                return Entry(Typed.SKIP)
            self.screen.line(f"✓ {question.choices[entry.choice]}", "dim")
            return None

    async def _answer_free(
        self, prompt: QuizPrompt, question: QuizQuestion, message_ts: str
    ) -> Entry | None:
        quizzes = self.core.quizzes
        trigger = f"console-{self.replies.ts.next()}"
        note = await quizzes.open_free_response(
            prompt.quiz_id,
            question.index,
            user=STUDENT,
            channel=CHANNEL,
            message_ts=message_ts,
            trigger_id=trigger,
        )
        view = self.replies.views.pop(trigger, None)
        if note or view is None:
            self.screen.line(plain_mrkdwn(note or "I can't find that quiz any more."), "dim")
            return Entry(Typed.SKIP)
        while True:
            line = await self._ask_line("answer> ", gap=False)
            entry = Entry(Typed.LEAVE) if line is None else parse_free(line)
            problem = validate_free_answer(entry.text) if entry.kind is Typed.ANSWER else None
            if entry.kind is Typed.AGAIN or problem:
                self.screen.line(problem or "Type your answer, or /skip.", "dim")
                continue
            if entry.kind is not Typed.ANSWER:
                return entry
            result = await quizzes.save_free_response(
                view.get("private_metadata"), user=STUDENT, text=entry.text
            )
            if result.errors:  # the quiz no longer takes answers
                for error in result.errors.values():
                    self.screen.line(plain_mrkdwn(error), "dim")
                return Entry(Typed.SKIP)
            if result.quiz is not None:
                await quizzes.refresh_message(result.quiz)
            return None


# -- running it ------------------------------------------------------------------------------


async def run_console(settings: Settings, *, new: bool = False) -> None:
    """Chat in this terminal until the student leaves (Ctrl-D, "exit", Ctrl-C)."""
    screen = Screen.for_stdout()
    _log_to(screen, settings)
    reader = LineReader(sys.stdin.fileno())
    app = ConsoleApp(settings, screen=screen, reader=reader, new=new)
    loop = asyncio.get_running_loop()
    leave = asyncio.Event()
    # Ctrl-C, a stop, the terminal closed: leave as "exit" does (a turn in flight is parked).
    signals = [signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)]
    for sig in signals:
        if sig is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, leave.set)
    try:
        await app.open()
        reader.start()
        chat = asyncio.create_task(app.chat(), name="console-chat")
        left = asyncio.create_task(leave.wait(), name="console-leave")
        await asyncio.wait({chat, left}, return_when=asyncio.FIRST_COMPLETED)
        for task in (chat, left):
            task.cancel()
        await asyncio.gather(chat, left, return_exceptions=True)
        if not chat.cancelled() and chat.exception() is not None:
            raise chat.exception()  # type: ignore[misc]
    finally:
        screen.finish()
        await app.close()


def _log_to(screen: Screen, settings: Settings) -> None:
    """Log records go to the screen as dim lines: warnings and up, unless LOG_LEVEL says."""
    level = settings.log_level if os.environ.get("LOG_LEVEL") else "WARNING"
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ScreenLog(screen, logging.getLevelName(level)))
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "openai", "slack_bolt", "slack_sdk", "agentops"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def main(args: Sequence[str]) -> int:
    """``python -m bot console [--new]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bot console",
        description="Chat with the tutor in this terminal (no Slack app needed).",
    )
    parser.add_argument(
        "--new",
        action="store_true",
        help="start another conversation (the last one is remembered otherwise)",
    )
    options = parser.parse_args(list(args))
    try:
        settings = load_console_settings()
    except ConfigError as exc:
        print(f"tutorbot: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_console(settings, new=options.new))
    except KeyboardInterrupt:  # where signal handlers are not available (Windows)
        return 0
    except (StoreError, RuntimeError_) as exc:
        print(f"tutorbot: could not start the console: {exc}", file=sys.stderr)
        return 1
    return 0
