"""The conversation core, built once from the settings for one surface.

Slack (``bot.app.TutorBot``) and the terminal (``bot.console``) put different surfaces
around the same parts: store, runtime, telemetry, quiz flow, turn runner and the per-thread
workers. Building them here keeps the two from drifting apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.config import Settings
from bot.conversation import Conversation
from bot.core.turn import AnswerBlocks, TurnRunner
from bot.files import FileIntake
from bot.quiz.flow import QuizFlow
from bot.runtime import create_runtime
from bot.slack.budget import SlackBudget
from bot.slack.surface import Surface
from bot.tasks import BackgroundTasks
from bot.telemetry import create_telemetry
from store import Pool, open_store

# The team of the console's conversations (``bot.console``): not Slack threads.
CONSOLE_TEAM = "console"


class Core:
    """Owns the core's resources; ``open`` before use, ``close`` in reverse order."""

    def __init__(
        self,
        settings: Settings,
        surface: Surface,
        *,
        budget: SlackBudget | None = None,
        slack_token: Callable[[], Awaitable[str]] | None = None,
        exclude_teams: tuple[str, ...] = (),
        answer_blocks: AnswerBlocks | None = None,
    ) -> None:
        """``slack_token``: with many workspaces, the bot token of the workspace at hand
        (file downloads); otherwise ``SLACK_BOT_TOKEN`` is the one. ``answer_blocks``: what
        ends every answer (Slack: the feedback buttons)."""
        self.tasks = BackgroundTasks()
        pool = Pool(size=settings.database_pool_size, max_overflow=settings.database_max_overflow)
        self.store = open_store(settings.database_url, pool=pool)
        self.runtime = create_runtime(settings, self.store)
        self.telemetry = create_telemetry(
            api_key=settings.agentops_api_key, redact_content=settings.agentops_redact_content
        )
        self.quizzes = QuizFlow(store=self.store, replies=surface)
        self.budget = budget if budget is not None else SlackBudget()
        self.files = FileIntake(
            store=self.store,
            runtime=self.runtime,
            bot_token=settings.slack_bot_token,
            api_url=settings.slack_api_url,
            max_bytes=settings.max_file_bytes,
            file_info=surface.file_info,
            slack_token=slack_token,
        )
        self.processor = TurnRunner(
            store=self.store,
            runtime=self.runtime,
            replies=surface,
            budget=self.budget,
            telemetry=self.telemetry,
            quizzes=self.quizzes,
            files=self.files,
            run_timeout=settings.run_timeout,
            answer_blocks=answer_blocks,
        )
        self.conversation = Conversation(
            store=self.store,
            processor=self.processor,
            replies=surface,
            runtime_name=self.runtime.name,
            tasks=self.tasks,
            exclude_teams=exclude_teams,
        )
        self.quizzes.enqueue_answers = self.conversation.enqueue_quiz_answers

    async def open(self) -> None:
        """Open the store (applying migrations) and prepare the runtime."""
        await self.store.open()
        await self.runtime.start()

    async def close(self) -> None:
        """Park the turns in flight (resumed on the next start), then close everything.

        The leases are given up only after the steps that must not stop half-way (posting
        an answer and recording it) ended: during a rolling deploy no other process resumes
        a turn while this one still writes it. If they did not end in time, the leases are
        left to run out with this process's heartbeat instead."""
        await self.conversation.close()
        if await self.processor.drain():
            await self.conversation.retire()
        self.processor.close_traces()
        await self.tasks.close(timeout=1.0)
        await self.telemetry.aclose()
        await self.runtime.aclose()
        await self.store.close()
