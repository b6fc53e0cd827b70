"""Quiz buttons and the free-response modal. Each acks first (buttons) or decides field
errors within the 3 s window (modal), then hands the click to ``QuizFlow``."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck

from bot.quiz.blocks import (
    ACTION_CHOICE_PATTERN,
    ACTION_OPEN_FREE_PATTERN,
    ACTION_SUBMIT_PATTERN,
    VIEW_FREE_RESPONSE,
    QuizActionKind,
    QuizPayloadError,
    parse_action,
    parse_free_answer,
)
from bot.quiz.flow import NOT_FOUND, QuizFlow
from bot.replies import Replies
from bot.tasks import BackgroundTasks
from store.base import StoreError

log = logging.getLogger(__name__)

CLICK_NOT_SAVED = "I couldn't save that click just now. Please click again in a moment."


def _where(body: dict[str, Any]) -> tuple[str, str, str | None]:
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id") or ""
    message_ts = container.get("message_ts") or (body.get("message") or {}).get("ts") or ""
    thread_ts = (body.get("message") or {}).get("thread_ts")
    return str(channel), str(message_ts), thread_ts


def register(app: AsyncApp, quizzes: QuizFlow, replies: Replies, tasks: BackgroundTasks) -> None:
    async def on_quiz_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        tasks.spawn(handle_click(body, action), name="quiz-click")

    async def handle_click(body: dict[str, Any], action: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        channel, message_ts, thread_ts = _where(body)
        try:
            note = await take_click(body, action, user, channel, message_ts)
        except StoreError as exc:
            # Slack does not send a click again: the student is asked to, and nothing
            # half-done is kept (each quiz step is one store call).
            log.warning("quiz click from %s not recorded: %s", user, exc)
            note = CLICK_NOT_SAVED
        if note is not None and channel and user:
            await replies.ephemeral(channel, user, note, thread_ts=thread_ts)

    async def take_click(
        body: dict[str, Any], action: dict[str, Any], user: str, channel: str, message_ts: str
    ) -> str | None:
        try:
            parsed = parse_action(action.get("action_id"), action.get("value"))
        except QuizPayloadError as exc:
            log.warning("ignoring malformed quiz action from %s: %s", user, exc)
            note: str | None = NOT_FOUND
        else:
            if parsed.kind is QuizActionKind.CHOICE:
                note = await quizzes.choose(
                    parsed.quiz_id,
                    parsed.question_index or 0,
                    parsed.choice_index or 0,
                    user=user,
                    channel=channel,
                    message_ts=message_ts,
                )
            elif parsed.kind is QuizActionKind.OPEN_FREE:
                note = await quizzes.open_free_response(
                    parsed.quiz_id,
                    parsed.question_index or 0,
                    user=user,
                    channel=channel,
                    message_ts=message_ts,
                    trigger_id=str(body.get("trigger_id") or ""),
                )
            else:
                note = await quizzes.submit(
                    parsed.quiz_id, user=user, channel=channel, message_ts=message_ts
                )
        return note

    for pattern in (ACTION_CHOICE_PATTERN, ACTION_OPEN_FREE_PATTERN, ACTION_SUBMIT_PATTERN):
        app.action(pattern)(on_quiz_button)

    @app.view(VIEW_FREE_RESPONSE)
    async def on_free_response(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id") or "")
        try:
            text = parse_free_answer(view)
        except QuizPayloadError:
            text = None
        result = await quizzes.save_free_response(
            view.get("private_metadata"), user=user, text=text
        )
        if result.errors:
            await ack(response_action="errors", errors=result.errors)
            return
        await ack()
        if result.quiz is not None:
            tasks.spawn(quizzes.refresh_message(result.quiz), name="quiz-refresh")

    # Buttons and views the bot does not own (or no longer knows): ack so Slack shows no error.
    @app.action(re.compile(".*"))
    async def ignore_other_actions(ack: AsyncAck) -> None:
        await ack()

    @app.view(re.compile(".*"))
    async def ignore_other_views(ack: AsyncAck) -> None:
        await ack()
