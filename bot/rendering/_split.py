"""Split Markdown into Slack-sized chunks without breaking code fences or tables.

Written here because Slack renders each chunk on its own and only needs it to be valid by
itself: a line scanner that knows fences and tables gives that without a full Markdown parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MIN_LIMIT = 200

# Fences may be indented (code inside list items); a backtick fence's info string cannot
# contain backticks, otherwise the line is inline code such as "```x```".
_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# A split fence is reopened with its opener; a huge info string would eat the room.
_MAX_INFO = 40


@dataclass
class _Fence:
    indent: str
    fence: str
    info: str
    body: list[str] = field(default_factory=list)
    closed: bool = False

    def closes_on(self, line: str) -> bool:
        stripped = line.strip()
        return len(stripped) >= len(self.fence) and set(stripped) == {self.fence[0]}

    def render(self, body: list[str], *, compact: bool = False) -> str:
        indent, info = ("", self.info.strip()[:_MAX_INFO]) if compact else (self.indent, self.info)
        return "\n".join([f"{indent}{self.fence}{info}", *body, f"{indent}{self.fence}"])


_Block = list[str] | _Fence


def _open_fence(line: str) -> _Fence | None:
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    fence, info = match["fence"], match["info"]
    if fence[0] == "`" and "`" in info:
        return None
    return _Fence(indent=match["indent"], fence=fence, info=info)


def _blocks(markdown: str) -> list[_Block]:
    """Paragraphs (runs of non-blank lines) and fenced code blocks, in order."""
    blocks: list[_Block] = []
    paragraph: list[str] = []
    fence: _Fence | None = None
    for line in markdown.split("\n"):
        if fence is not None:
            if fence.closes_on(line):
                fence.closed = True
                blocks.append(fence)
                fence = None
            else:
                fence.body.append(line)
            continue
        opened = _open_fence(line)
        if opened is not None or not line.strip():
            if paragraph:
                blocks.append(paragraph)
                paragraph = []
            fence = opened
        else:
            paragraph.append(line)
    if paragraph:
        blocks.append(paragraph)
    if fence is not None:  # an unclosed fence runs to the end; we close it
        blocks.append(fence)
    return blocks


def _hard_split(line: str, width: int, *, at_spaces: bool) -> list[str]:
    """Cut a line into pieces of at most ``width``; prose prefers the last space."""
    parts: list[str] = []
    while len(line) > width:
        cut = line.rfind(" ", width // 2, width + 1) if at_spaces else -1
        if cut > 0:
            parts.append(line[:cut].rstrip())
            line = line[cut + 1 :]
        else:
            parts.append(line[:width])
            line = line[width:]
    parts.append(line)
    return parts


def _pack_lines(lines: list[str], width: int, first: int, *, at_spaces: bool) -> list[list[str]]:
    """Group lines so each group joined by newlines fits: the first in ``first``, others ``width``.

    The first group is skipped (not emptied into the result) when nothing fits in ``first``.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    room = min(first, width)
    for line in lines:
        for part in _hard_split(line, width, at_spaces=at_spaces):
            needed = len(part) + (1 if current else 0)
            if size + needed > room:
                if current:
                    groups.append(current)
                current, size, room, needed = [], 0, width, len(part)
            current.append(part)
            size += needed
    if current:
        groups.append(current)
    return groups


def _render(block: _Block) -> str:
    return block.render(block.body) if isinstance(block, _Fence) else "\n".join(block)


def _split_paragraph(lines: list[str], first: int, limit: int) -> list[str]:
    # A table continued in the next message needs its header again to render as a table.
    if len(lines) > 2 and lines[0].lstrip().startswith("|") and _TABLE_SEPARATOR.match(lines[1]):
        head = "\n".join(lines[:2])
        if len(head) <= limit // 4:
            width = limit - len(head) - 1
            groups = _pack_lines(lines[2:], width, first - len(head) - 1, at_spaces=True)
            return [head + "\n" + "\n".join(group) for group in groups]
    return ["\n".join(group) for group in _pack_lines(lines, limit, first, at_spaces=True)]


def _split_fence(fence: _Fence, first: int, limit: int) -> list[str]:
    compact = len(fence.render([])) > limit // 4
    overhead = len(fence.render([], compact=compact)) + 1
    if overhead >= limit:  # an absurd fence string: the body is all we can keep
        return [
            "\n".join(group) for group in _pack_lines(fence.body, limit, first, at_spaces=False)
        ]
    groups = _pack_lines(fence.body, limit - overhead, first - overhead, at_spaces=False)
    return [fence.render(group, compact=compact) for group in groups]


def _split_block(block: _Block, first: int, limit: int) -> list[str]:
    if isinstance(block, _Fence):
        return _split_fence(block, first, limit)
    return _split_paragraph(block, first, limit)


def split_markdown(markdown: str, limit: int) -> list[str]:
    """Split ``markdown`` into chunks of at most ``limit`` characters, each valid alone.

    Splits between paragraphs, then between lines, then inside a line (at a space for
    prose). A fenced code block that must be split is closed at the end of each chunk and
    reopened, with the same language tag, at the start of the next. A table split across
    chunks repeats its header row, and a fence left open is closed. Text that fits is returned
    unchanged otherwise; blank input gives [].
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT} characters, got {limit}")
    text = markdown.strip("\n")
    if not text.strip():
        return []
    blocks = _blocks(text)
    last = blocks[-1] if blocks else None
    if isinstance(last, _Fence) and not last.closed:  # close what the model left open
        text = f"{text}\n{last.indent}{last.fence}"
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    current = ""
    for block in blocks:
        whole = _render(block)
        if current and len(current) + 2 + len(whole) <= limit:
            current = f"{current}\n\n{whole}"
            continue
        # Start a new chunk, unless the block must be split anyway and a good part of the
        # current chunk is still free: then it begins here (an intro stays with its code).
        oversized = len(whole) > limit
        room = limit - len(current) - 2 if current else limit
        if current and (not oversized or room < limit // 4):
            chunks.append(current)
            current, room = "", limit
        pieces = _split_block(block, room, limit) if oversized else [whole]
        if current and len(current) + 2 + len(pieces[0]) > limit:  # nothing fitted the room
            chunks.append(current)
            current, pieces = "", _split_block(block, limit, limit)
        current = f"{current}\n\n{pieces[0]}" if current else pieces[0]
        for piece in pieces[1:]:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def fence_for(content: str) -> str:
    """A backtick fence longer than any backtick run in ``content``, so it cannot close early."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    return "`" * max(3, longest + 1)
