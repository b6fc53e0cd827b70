"""The slash command (``/tutor`` by default): ack at once, then hand off to the core."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.conversation import Conversation
from bot.student_pages import StudentPages
from bot.tasks import BackgroundTasks
from handlers.parsing import parse_command_text
from store.base import StoreError

log = logging.getLogger(__name__)


def help_text(command: str) -> str:
    return (
        "*I'm your tutor.* Here is how to use me:\n"
        f"• `{command} <question>` — I post your question here and answer it in a thread.\n"
        f"• `{command} quiz <topic>` — a quiz on a topic: pick answers, then press Submit.\n"
        f"• `{command} stats` — this channel's last 7 days with me (only you see it).\n"
        "• Mention me (`@tutorbot …`) in a channel, or send me a direct message.\n"
        "• Reply in my threads to keep the conversation going — no mention needed.\n"
        "• Share a PDF, CSV or image in the thread and ask about it.\n"
        f"• `{command} help` — this message."
    )


STATS_UNAVAILABLE = "I can't get this channel's stats right now. Please try again in a minute."


def register(
    app: AsyncApp,
    conversation: Conversation,
    command_name: str,
    tasks: BackgroundTasks,
    pages: StudentPages,
) -> None:
    @app.command(command_name)
    async def on_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        parsed = parse_command_text(command.get("text"))
        if parsed.action == "help" or (parsed.action == "quiz" and not parsed.argument):
            await ack(response_type="ephemeral", text=help_text(command_name))
            return
        await ack()
        if parsed.action == "stats":
            tasks.spawn(stats(command, respond), name="slash-stats")
            return
        if parsed.action == "quiz":
            question = (
                f"Quiz me on {parsed.argument}. Use the display_quiz tool with a few questions."
            )
            topic: str | None = parsed.argument
        else:
            question, topic = parsed.argument, None
        tasks.spawn(start(command, question, topic, respond), name="slash-command")

    async def start(
        command: dict[str, Any], question: str, topic: str | None, respond: AsyncRespond
    ) -> None:
        note = await conversation.start_from_command(
            team=str(command.get("team_id") or "T0"),
            channel=str(command.get("channel_id") or ""),
            user=str(command.get("user_id") or ""),
            question=question,
            quiz_topic=topic,
            # Unique per invocation: the same signed request replayed is answered once.
            request_id=str(command.get("trigger_id") or "") or None,
        )
        if note is not None:
            await respond(text=note, response_type="ephemeral", replace_original=False)

    async def stats(command: dict[str, Any], respond: AsyncRespond) -> None:
        """The channel's last days, only to the person who asked (the command's response URL,
        which also works where the bot is not a member)."""
        team = str(command.get("team_id") or "T0")
        channel = str(command.get("channel_id") or "")
        try:
            text, blocks = await pages.channel_stats(team, channel)
        except StoreError as exc:
            log.warning("stats of %s/%s unavailable: %s", team, channel, exc)
            await respond(text=STATS_UNAVAILABLE, response_type="ephemeral", replace_original=False)
            return
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
