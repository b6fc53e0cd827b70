"""A stored conversation trimmed to a token budget before it is sent to a chat server.

A chat server keeps nothing, so every request carries the conversation, and a long one
would outgrow the model's context (or the budget a school sets with ``CHAT_HISTORY_TOKENS``).
What goes first is the oldest *exchange*: a user message and everything after it up to the
next user message (the assistant's answers, its tool calls and their results). Dropping
whole exchanges never separates a tool call from its result (OpenAI and vLLM answer 400 to
that), and the kept part always starts with a user message (some chat templates refuse
anything else after the system prompt). The instructions (leading system or developer
messages) always stay, and so does the current turn (the latest user message and what
followed it); if that alone exceeds the budget, the user message's text is cut in the middle,
with a marker saying so.

Tokens are estimated, not counted: about four characters a token, plus a little per message.
No tokenizer to download, and close enough for a budget.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # role and separators, per message
# What a non-text part (an image) costs, roughly: one 512px tile at high detail.
PART_TOKENS = 800
# Even against a tiny budget the model gets this much of the student's message.
MIN_KEPT_CHARS = 2000
CUT_MARKER = (
    "\n\n[… {cut} characters of this message were left out to fit the model's context …]\n\n"
)

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TrimmedHistory:
    messages: list[dict[str, Any]]
    dropped: int  # messages left out
    cut_chars: int  # characters cut from the latest user message
    tokens: int  # estimated tokens of ``messages``


def estimate_tokens(message: Message) -> int:
    """A cheap estimate of what one chat message costs in the prompt."""
    chars = len(str(message.get("tool_call_id") or ""))
    content = message.get("content")
    parts = 0
    if isinstance(content, str):
        chars += len(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                chars += len(str(part.get("text") or ""))
            else:
                parts += 1
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        chars += len(str(call.get("id") or "")) + len(str(function.get("name") or ""))
        chars += len(str(function.get("arguments") or "")) + 16
    return MESSAGE_TOKENS + math.ceil(chars / CHARS_PER_TOKEN) + parts * PART_TOKENS


def trim_history(messages: Sequence[Message], budget: int) -> TrimmedHistory:
    """The messages to send: the instructions, as many recent exchanges as fit, and the
    current turn. ``messages`` are Chat Completions messages, oldest first."""
    start = 0
    while start < len(messages) and messages[start].get("role") in ("system", "developer"):
        start += 1
    instructions = [dict(m) for m in messages[:start]]
    rest = [dict(m) for m in messages[start:]]
    users = [i for i, m in enumerate(rest) if m.get("role") == "user"]
    if not users:
        kept = instructions + rest
        return TrimmedHistory(kept, 0, 0, sum(map(estimate_tokens, kept)))

    current = rest[users[-1] :]
    used = sum(map(estimate_tokens, instructions)) + sum(map(estimate_tokens, current))
    cut_chars = 0
    if used > budget:
        current[0], cut_chars = _cut_text(current[0], (used - budget) * CHARS_PER_TOKEN)
        used = sum(map(estimate_tokens, instructions)) + sum(map(estimate_tokens, current))

    # Older exchanges, newest first, while they fit; the first that does not ends it, so the
    # kept conversation has no holes.
    kept_from = users[-1]
    for begin, end in reversed(list(itertools.pairwise(users))):
        cost = sum(estimate_tokens(m) for m in rest[begin:end])
        if used + cost > budget:
            break
        used += cost
        kept_from = begin

    kept = instructions + rest[kept_from : users[-1]] + current
    return TrimmedHistory(kept, len(messages) - len(kept), cut_chars, used)


def _cut_text(message: dict[str, Any], excess_chars: int) -> tuple[dict[str, Any], int]:
    """The message with ``excess_chars`` fewer characters of text (never below a floor),
    cut from the middle: a question can be at either end of a long paste."""
    message = copy.deepcopy(message)
    content = message.get("content")
    if isinstance(content, str):
        message["content"], cut = _cut_middle(content, excess_chars)
        return message, cut
    if isinstance(content, list):
        texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if texts:
            longest = max(texts, key=lambda p: len(str(p.get("text") or "")))
            longest["text"], cut = _cut_middle(str(longest.get("text") or ""), excess_chars)
            return message, cut
    return message, 0


def _cut_middle(text: str, excess_chars: int) -> tuple[str, int]:
    keep = max(MIN_KEPT_CHARS, len(text) - excess_chars - len(CUT_MARKER) - 12)
    if keep >= len(text):
        return text, 0
    head = keep * 2 // 3
    tail = keep - head
    cut = len(text) - keep
    return text[:head] + CUT_MARKER.format(cut=f"{cut:,}") + text[len(text) - tail :], cut
