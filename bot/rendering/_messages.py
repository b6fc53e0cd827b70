"""Slack messages for the answer, the "Show work" reply, progress and failure notes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.rendering._citations import apply_citations
from bot.rendering._split import fence_for, split_markdown
from bot.rendering._text import escape_markdown, fallback_text, truncate, truncate_escaped
from bot.runtime.base import AssistantMessage, CodeStep

# Slack allows ~12,000 characters of markdown-block text per message; keep a margin.
MARKDOWN_LIMIT = 11_000
NO_ANSWER = "I don't have an answer for that — could you rephrase?"

WORK_STEPS = 3
CODE_LIMIT = 2_000
LOGS_LIMIT = 1_500
LOGS_TRUNCATED = "\n… (truncated) …\n"

PROGRESS_LIMIT = 150
ERROR_LIMIT = 500
_PROGRESS_EMOJI = ":hourglass_flowing_sand:"
_ERROR_EMOJI = ":warning:"
_DEFAULT_ERROR = "Something went wrong. Please try again."
_LEADING_EMOJI = re.compile(r"^:[a-z0-9_+'-]+:")
# Slack's special tokens; model text must not ping a channel or a user. A zero-width space
# after "<" keeps the text readable and inert.
_SLACK_TOKEN = re.compile(r"<(?=!(?:channel|here|everyone|subteam\^)|@[UW][A-Z0-9]|#C[A-Z0-9])")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\n\s*File \"")
# Links into the code interpreter's sandbox ("[plot.png](sandbox:/mnt/data/plot.png)") lead
# nowhere in Slack; the file itself is uploaded to the thread, so only its name is kept.
_SANDBOX_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?sandbox:([^)\s>]*)>?\s*\)")
_SANDBOX_PATH = re.compile(r"sandbox:(?:/mnt/data/)?([^\s)\]>]+)")


@dataclass(frozen=True)
class SlackMessage:
    """What to send with ``chat.postMessage`` / ``chat.update``.

    ``text`` is the notification and fallback text, already escaped for mrkdwn; ``blocks``
    is what Slack shows.
    """

    text: str
    blocks: list[dict[str, Any]]

    def as_kwargs(self) -> dict[str, Any]:
        """``text`` and ``blocks`` as keyword arguments for the Web API call."""
        return {"text": self.text, "blocks": self.blocks}


def _markdown_message(markdown: str) -> SlackMessage:
    return SlackMessage(
        text=fallback_text(markdown),
        blocks=[{"type": "markdown", "text": markdown}],
    )


def render_markdown(markdown: str, *, limit: int = MARKDOWN_LIMIT) -> list[SlackMessage]:
    """Standard Markdown as one or more messages with a ``markdown`` block of ≤ ``limit`` chars.

    Returns [] for blank input. See ``split_markdown`` for where long text is split.
    """
    return [_markdown_message(chunk) for chunk in split_markdown(markdown, limit)]


def render_answer(
    messages: Sequence[AssistantMessage], *, limit: int = MARKDOWN_LIMIT
) -> list[SlackMessage]:
    """The assistant's answer as Slack messages, with citations as numbered footnotes.

    Messages are joined with a blank line; each citation marker becomes "[n]" and a
    "Sources" list follows the answer; stray file-search markers are dropped. Long answers
    are split over several messages; Slack tokens such as <!channel> or <@U…> are defused.
    An empty answer gives one gentle "no answer" message.
    """
    body, sources = apply_citations(messages)
    body = _without_sandbox_links(body)
    if not body:
        return [_markdown_message(NO_ANSWER)]
    markdown = f"{body}\n\n{sources}" if sources else body
    markdown = _SLACK_TOKEN.sub("<\u200b", markdown)
    return render_markdown(markdown, limit=limit)


def _sandbox_label(match: re.Match[str]) -> str:
    label = match[1].strip() or match[2].rsplit("/", 1)[-1]
    return f"**{label}**" if label else ""


def _without_sandbox_links(text: str) -> str:
    text = _SANDBOX_LINK.sub(_sandbox_label, text)
    return _SANDBOX_PATH.sub(lambda m: m[1].rsplit("/", 1)[-1], text).strip()


def _truncate_logs(logs: str) -> str:
    # Keep the start and the end: a traceback's last line is the part a student needs.
    if len(logs) <= LOGS_LIMIT:
        return logs
    room = LOGS_LIMIT - len(LOGS_TRUNCATED)
    head, tail = logs[: room * 2 // 3], logs[len(logs) - room // 3 :]
    return head.rstrip() + LOGS_TRUNCATED + tail.lstrip()


def _fenced(content: str, language: str = "") -> str:
    fence = fence_for(content)
    return f"{fence}{language}\n{content}\n{fence}"


def _step_markdown(number: int, total: int, step: CodeStep) -> str:
    code = truncate(step.code.strip("\n"), CODE_LIMIT, suffix="\n# … (truncated)")
    parts = [
        f"**Step {number} of {total}**" if total > 1 else "**Code**",
        _fenced(code or "# (no code)", "python"),
    ]
    logs = step.logs.strip("\n")
    if logs.strip():
        parts += ["_Output_", _fenced(_truncate_logs(logs))]
    else:
        parts.append("_No output._")
    if step.files:
        names = ", ".join(escape_markdown(file.filename) for file in step.files)
        parts.append(f"_Files:_ {names}")
    return "\n".join(parts)


def render_work(
    steps: Sequence[CodeStep],
    *,
    max_steps: int = WORK_STEPS,
    limit: int = MARKDOWN_LIMIT,
) -> list[SlackMessage]:
    """A compact "Show work" thread reply: the code the assistant ran and what it printed.

    Shows the first ``max_steps`` steps (code cut to ~2,000 chars, output to ~1,500 keeping
    its start and end) and summarizes the rest as "…and N more steps". [] when no steps.
    """
    if not steps:
        return []
    parts = ["**Show work** — the code I ran"]
    parts += [
        _step_markdown(number, len(steps), step)
        for number, step in enumerate(steps[:max_steps], start=1)
    ]
    hidden = len(steps) - min(len(steps), max_steps)
    if hidden:
        parts.append(f"_…and {hidden} more step{'' if hidden == 1 else 's'}._")
    return render_markdown("\n\n".join(parts), limit=limit)


def progress_text(label: str) -> SlackMessage:
    """The "working on it" placeholder, e.g. ":hourglass_flowing_sand: Writing code…"."""
    label = " ".join(label.split()) or "Thinking…"
    if not _LEADING_EMOJI.match(label):
        label = f"{_PROGRESS_EMOJI} {label}"
    text = truncate_escaped(label, PROGRESS_LIMIT)
    return SlackMessage(
        text=text, blocks=[{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]
    )


def error_text(message: str) -> SlackMessage:
    """A short plain failure note (≤ 500 chars); anything from a traceback on is dropped."""
    note = _TRACEBACK.split(message, maxsplit=1)[0].strip() or _DEFAULT_ERROR
    prefix = f"{_ERROR_EMOJI} "
    text = prefix + truncate_escaped(note, ERROR_LIMIT - len(prefix))
    section = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    return SlackMessage(text=text, blocks=[section])
