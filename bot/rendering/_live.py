"""The answer as it streams: what of the model's raw text may be shown yet, and where a
long answer rolls over to its next message. Pure and table-tested.

The final renderer (``render_answer``) sees a whole answer; a stream sees it in pieces, so
a construct that needs cleaning (a file-search marker, a sandbox link, a Slack token such
as ``<!channel>``) may be cut in two. ``LiveText`` holds back the tail of the text that
might still become one, and releases it cleaned once it cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.rendering._split import _open_fence

# Longest construct we wait for before giving up and showing the text as it is.
HOLD_LIMIT = 400
_MARKER = re.compile(r"[ \t]*【[^【】\n]{0,400}】")
_SANDBOX_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?sandbox:([^)\s>]*)>?\s*\)")
_SLACK_TOKEN = re.compile(r"<(?=!(?:channel|here|everyone|subteam\^)|@[UW][A-Z0-9]|#C[A-Z0-9])")


def _clean(text: str) -> str:
    text = _MARKER.sub("", text)
    text = _SANDBOX_LINK.sub(
        lambda m: f"**{m[1].strip() or m[2].rsplit('/', 1)[-1]}**" if (m[1] or m[2]) else "", text
    )
    return _SLACK_TOKEN.sub("<\u200b", text)


_DECISIVE = ("!channel", "!here", "!everyone", "!subteam^")
_SHORT = ("", "@", "@U", "@W", "#", "#C")


def _link_pending(tail: str) -> bool:
    """Whether ``tail`` (from a "[") may still become a sandbox link."""
    label, closed, rest = tail.partition("]")
    if "\n" in label or len(label) > 200:
        return False
    if not closed or not rest:
        return True
    if not rest.startswith("("):
        return False
    target = rest[1:].lstrip(" \t<")
    if target.startswith("sandbox:"):
        return ")" not in target
    return "sandbox:".startswith(target)


def _token_pending(rest: str) -> bool:
    """Whether the text after a "<" may still become a Slack token such as <!channel>."""
    return rest in _SHORT or any(d.startswith(rest) and d != rest for d in _DECISIVE)


def _hold_from(text: str) -> int:
    """Where a construct that is not finished yet starts (``len(text)`` when none)."""
    start = len(text)
    marker = text.rfind("【")
    if marker >= 0 and "】" not in text[marker:] and len(text) - marker <= HOLD_LIMIT:
        start = len(text[:marker].rstrip(" \t"))  # the marker takes its leading space along
    bracket = text.rfind("[")
    if bracket >= 0 and _link_pending(text[bracket + 1 :]):
        start = min(start, bracket - 1 if bracket and text[bracket - 1] == "!" else bracket)
    angle = text.rfind("<")
    if angle >= 0 and _token_pending(text[angle + 1 :]):
        start = min(start, angle)
    return start


class LiveText:
    """Feed the model's raw text; get back the cleaned part that is safe to show now.

    Messages of a run are separated by a blank line (``feed(..., message=n)``).
    """

    def __init__(self) -> None:
        self._pending = ""
        self._message: int | None = None
        self.raw_chars = 0  # raw characters taken in, over all messages

    def feed(self, text: str, *, message: int = 0) -> str:
        self.raw_chars += len(text)
        prefix = ""
        if self._message is not None and message != self._message:
            prefix = self.flush() + "\n\n"
        self._message = message
        self._pending += text
        cut = _hold_from(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return prefix + _clean(ready)

    @property
    def held(self) -> str:
        """Raw text held back for now."""
        return self._pending

    def flush(self) -> str:
        """Everything still held back (the answer ended)."""
        ready, self._pending = self._pending, ""
        return _clean(ready)


def clean_answer(text: str) -> str:
    """A whole answer's text, cleaned the way ``LiveText`` cleans it in pieces."""
    return _clean(text)


@dataclass(frozen=True, slots=True)
class Rollover:
    """Where to cut a message that grew too long, and how the next one starts."""

    head: str  # the text that stays (fence closed when it was open)
    tail: str  # what goes to the next message (fence reopened)


def open_fence(markdown: str) -> str | None:
    """The opening line of a code fence still open at the end of ``markdown``, or None."""
    fence = None
    for line in markdown.split("\n"):
        if fence is not None:
            if fence.closes_on(line):
                fence = None
            continue
        fence = _open_fence(line)
    if fence is None:
        return None
    return f"{fence.indent}{fence.fence}{fence.info}"


def roll_over(text: str, limit: int, *, keep: int = 0) -> Rollover:
    """Cut ``text`` (longer than ``limit``) for a new message, code fences balanced.

    Prefers a paragraph break, then a line break, in the second half of the room; the part
    that stays gets a closing fence if it ends inside code, the rest reopens it. The first
    ``keep`` characters (already shown in Slack) always stay whole in the head, which then
    starts with them exactly.
    """
    room = max(limit - 8, 1)  # leave space for a closing fence
    start = max(room // 2, keep)
    cut = text.rfind("\n\n", start, room)
    if cut < 0:
        cut = text.rfind("\n", start, room)
    if cut < 0:
        cut = max(room, keep)
    head, tail = text[:cut], text[cut:].lstrip("\n")
    trimmed = head.rstrip("\n")
    head = trimmed if len(trimmed) >= keep else head[:keep]
    opener = open_fence(head)
    if opener is not None:
        indent = opener[: len(opener) - len(opener.lstrip())]
        fence = re.match(r"`{3,}|~{3,}", opener.lstrip())
        assert fence is not None
        head = f"{head}" + ("" if head.endswith("\n") else "\n") + f"{indent}{fence.group(0)}"
        tail = f"{opener}\n{tail}"
    return Rollover(head=head, tail=tail)
