"""Tutorbot as a Slack agent app: pure builders for the Messages tab (greeting, suggested
prompts, titles), the model's context note, feedback buttons, the Home tab and ``/tutor
stats``. No I/O here; listeners in ``handlers/`` and the core send what these build."""

from bot.agent.context import context_note
from bot.agent.feedback import (
    FEEDBACK_ACTION_ID,
    FeedbackClick,
    FeedbackPayloadError,
    Vote,
    feedback_blocks,
    parse_feedback_click,
    thanks_text,
)
from bot.agent.home import HomeConversation, HomeQuiz, home_view
from bot.agent.stats import ChannelStats, stats_message
from bot.agent.surfaces import (
    SUGGESTED_PROMPTS,
    SuggestedPrompt,
    dm_title,
    greeting_text,
    suggested_prompts_payload,
)

__all__ = [
    "FEEDBACK_ACTION_ID",
    "SUGGESTED_PROMPTS",
    "ChannelStats",
    "FeedbackClick",
    "FeedbackPayloadError",
    "HomeConversation",
    "HomeQuiz",
    "SuggestedPrompt",
    "Vote",
    "context_note",
    "dm_title",
    "feedback_blocks",
    "greeting_text",
    "home_view",
    "parse_feedback_click",
    "stats_message",
    "suggested_prompts_payload",
    "thanks_text",
]
