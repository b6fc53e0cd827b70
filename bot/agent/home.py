"""The student's Home tab: recent conversations, recent quizzes, how to use the tutor, and
which model serves it. ``home_view`` returns the ``view`` for ``views.publish``.

The builder takes plain data (the store's rows mapped by the caller, newest first) and keeps
the view within Block Kit's limits whatever it is given: at most ``MAX_ITEMS`` of each list,
section text at most 3,000 characters, at most 100 blocks. Everything a student or the model
wrote is escaped for mrkdwn, so a title cannot mention people or make links. Dates are
Slack date tokens, shown in each reader's own time zone, with a UTC fallback.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.quiz.blocks import truncate
from bot.slack_text import escape_mrkdwn

MAX_ITEMS = 20  # latest conversations, latest quizzes
MAX_HOME_BLOCKS = 100
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_CONTEXT_CHARS = 3000
MAX_TITLE_CHARS = 150
MAX_QUESTION_CHARS = 200
MAX_ANSWER_CHARS = 300
MAX_PERMALINK_CHARS = 1000

RUNTIME_NAMES = {
    "responses": "OpenAI Responses API",
    "assistants": "Assistants API (v2 protocol)",
    "chat": "Chat Completions",
}

HOW_TO = (
    "• Ask a question in the *Messages* tab (or DM me): each question gets its own thread.\n"
    "• Mention me in a channel, or use `/tutor <question>`; reply in my thread to go on.\n"
    "• `/tutor quiz <topic>` for a quiz: pick your answers, then press *Submit*.\n"
    "• Share a PDF, CSV or image in a thread and ask about it.\n"
    "• Rate an answer with 👍 / 👎 under it; `/tutor stats` shows a channel's week."
)

# A permalink goes into <url|label>: it must be a plain https URL.
_SAFE_URL = re.compile(r"https://[^\s<>|]+")


@dataclass(frozen=True, slots=True)
class HomeConversation:
    title: str  # e.g. the thread's title or its first question
    permalink: str | None  # chat.getPermalink of the thread's first message
    when: datetime  # last activity


@dataclass(frozen=True, slots=True)
class HomeQuiz:
    title: str
    when: datetime  # when it was posted
    questions: Sequence[str]
    answers: Sequence[str | None]  # the student's, in question order; None = not answered
    submitted: bool
    permalink: str | None = None
    skipped: bool = False  # the student moved on without submitting it


def home_view(
    *,
    conversations: Sequence[HomeConversation],
    quizzes: Sequence[HomeQuiz],
    model: str,
    runtime: str,
) -> dict[str, Any]:
    """The Home tab view (``type: home``) for one student."""
    blocks: list[dict[str, Any]] = [
        _header("Your tutor"),
        _section(HOW_TO),
        _context(f"Answers come from `{escape_mrkdwn(model)}` via the {_runtime_name(runtime)}."),
        {"type": "divider"},
        _header("Recent conversations"),
    ]
    lines = [_conversation_line(c) for c in conversations[:MAX_ITEMS]]
    if lines:
        blocks.extend(_section(text) for text in _pack(lines))
    else:
        blocks.append(_context("No conversations yet. Ask me something in the Messages tab."))
    blocks += [{"type": "divider"}, _header("Recent quizzes")]
    if quizzes:
        blocks.extend(_section(_quiz_text(q)) for q in quizzes[:MAX_ITEMS])
    else:
        blocks.append(_context("No quizzes yet. Try `/tutor quiz fractions`."))
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


def slack_date(when: datetime) -> str:
    """A Slack date token (rendered in the reader's time zone) with a UTC fallback."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    fallback = aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(aware.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _runtime_name(runtime: str) -> str:
    return RUNTIME_NAMES.get(runtime, escape_mrkdwn(runtime) + " runtime")


def _link(label: str, permalink: str | None) -> str:
    if permalink and len(permalink) <= MAX_PERMALINK_CHARS and _SAFE_URL.fullmatch(permalink):
        return f"<{permalink}|{label}>"
    return label


def _title(text: str) -> str:
    return truncate(escape_mrkdwn(" ".join(text.split()) or "Untitled"), MAX_TITLE_CHARS)


def _conversation_line(conversation: HomeConversation) -> str:
    title = _link(_title(conversation.title), conversation.permalink)
    return f"• {title} · {slack_date(conversation.when)}"


def _quiz_text(quiz: HomeQuiz) -> str:
    status = "✅ Submitted" if quiz.submitted else "⏭️ Skipped" if quiz.skipped else "📝 Open"
    head = f"*{_link(_title(quiz.title), quiz.permalink)}* · {slack_date(quiz.when)} · {status}"
    lines = [head]
    for i, question in enumerate(quiz.questions):
        answer = quiz.answers[i] if i < len(quiz.answers) else None
        asked = truncate(escape_mrkdwn(" ".join(question.split())), MAX_QUESTION_CHARS)
        given = (
            truncate(escape_mrkdwn(" ".join(answer.split())), MAX_ANSWER_CHARS)
            if answer
            else "_no answer yet_"
        )
        lines.append(f"{i + 1}. {asked} → {given}")
    return _fit(lines)


def _fit(lines: Sequence[str]) -> str:
    """Whole lines up to a section's limit (never a link or date cut in half), then "…"."""
    text = lines[0]
    for line in lines[1:]:
        if len(text) + 1 + len(line) > MAX_SECTION_CHARS - 2:
            return text + "\n…"
        text += "\n" + line
    return text


def _pack(lines: Sequence[str]) -> list[str]:
    """Join lines into as few texts as fit a section (every line is far shorter than one)."""
    texts: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > MAX_SECTION_CHARS:
            texts.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        texts.append(current)
    return texts


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": text[:MAX_HEADER_CHARS], "emoji": True},
    }


def _section(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(mrkdwn, MAX_SECTION_CHARS)},
    }


def _context(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn, MAX_CONTEXT_CHARS)}],
    }
