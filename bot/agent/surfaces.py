"""What a student sees of the agent around the conversation itself: the greeting in the
Messages tab, the suggested prompts, and the title a DM conversation gets from its first
question.

Pure; the Messages-tab listeners send these with ``chat.postMessage``,
``assistant.threads.setSuggestedPrompts`` and ``assistant.threads.setTitle`` /
``agents.sessions.rename``. The manifest's ``features.agent_view.suggested_prompts`` lists
the same prompts (a test keeps them equal), so students see them before the first event.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SUGGESTED_PROMPTS = 4  # assistant.threads.setSuggestedPrompts takes 1-4
MAX_TITLE_CHARS = 60  # Slack allows 200; a history list shows far fewer
DEFAULT_TITLE = "New question"
PROMPTS_TITLE = "Try one of these"

# Slack message metadata on the greeting: a thread that starts under it is a new
# conversation, not one the bot forgot (``bot.thread_context.earlier_context``).
GREETING_EVENT = "tutorbot_greeting"
GREETING_METADATA = {"event_type": GREETING_EVENT, "event_payload": {}}

_USER_ID = re.compile(r"[UW][A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class SuggestedPrompt:
    title: str  # the chip the student sees
    message: str  # what is sent, as the student's message, when they pick it


SUGGESTED_PROMPTS: tuple[SuggestedPrompt, ...] = (
    SuggestedPrompt("Quiz me on fractions", "Quiz me on fractions."),
    SuggestedPrompt("Solve 3x + 11 = 14 step by step", "Solve 3x + 11 = 14 step by step."),
    SuggestedPrompt(
        "Explain a PDF I share",
        "I'm going to share a PDF in this thread. Explain its main ideas to me, simply.",
    ),
    SuggestedPrompt(
        "Plot a function",
        "Plot y = x^2 - 4x + 3 and show me where it crosses the x-axis.",
    ),
)


def suggested_prompts_payload(
    prompts: Sequence[SuggestedPrompt] = SUGGESTED_PROMPTS,
) -> list[dict[str, str]]:
    """The ``prompts`` argument of ``assistant.threads.setSuggestedPrompts``.

    Raises ``ValueError`` outside Slack's 1-4 prompts (a programming error, not user input).
    """
    if not 1 <= len(prompts) <= MAX_SUGGESTED_PROMPTS:
        raise ValueError(f"Slack takes 1-{MAX_SUGGESTED_PROMPTS} suggested prompts")
    return [{"title": p.title, "message": p.message} for p in prompts]


def greeting_text(user_id: str | None = None) -> str:
    """The first message a student gets in the Messages tab (mrkdwn; sent once per student)."""
    hello = f"Hi <@{user_id}>!" if user_id and _USER_ID.fullmatch(user_id) else "Hi!"
    return (
        f"{hello} I'm tutorbot, your maths tutor. Ask me anything: I explain step by step, "
        "run code when the maths needs it, read the PDFs, CSVs and images you share, and "
        "quiz you when you want to practise. Every question gets its own thread, and I keep "
        "what we said there. Pick a suggestion or type your own question."
    )


# Slack markup in a message's text: <@U…>, <#C…|name>, <!here>, <url|label>, <url>.
_ANGLE = re.compile(r"<([^<>]*)>")
_EMPHASIS = re.compile(r"(?<![\w*_~`])([*_~])(?=\S)(.+?)(?<=\S)\1(?![\w*_~`])")
_CODE_FENCE = re.compile(r"```+")
_INLINE_CODE = re.compile(r"`([^`]*)`")


def _angle(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith(("@U", "@W")):
        return "@" + label if label else ""
    if target.startswith("!subteam^"):  # the label is "@team" already
        return label
    if target.startswith("#C") or target.startswith("#G"):
        return "#" + label if label else ""
    if target.startswith("!"):  # <!here>, <!channel>, <!date^…|fallback>
        return label or ("@" + target[1:] if target[1:].isalpha() else "")
    return label or target  # a link: its label, or the URL itself


def plain_text(text: str) -> str:
    """Slack message text as plain words: markup, emphasis and code marks removed."""
    text = _ANGLE.sub(_angle, text or "")
    text = html.unescape(text)  # Slack sends &amp; &lt; &gt;
    text = _CODE_FENCE.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def dm_title(question: str, limit: int = MAX_TITLE_CHARS) -> str:
    """A conversation's title from its first question: plain text, one line, at most
    ``limit`` characters, cut at a word boundary with "…"; ``DEFAULT_TITLE`` if nothing is
    left (a question that was only a mention or an emoji code is still a question)."""
    text = plain_text(question)
    if not text:
        return DEFAULT_TITLE
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # keep whole words unless that loses half the title
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"
