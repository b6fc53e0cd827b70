"""Turn citation markers into numbered footnotes with a "Sources" section."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

from bot.rendering._text import escape_markdown, truncate
from bot.runtime.base import AssistantMessage, Citation

QUOTE_LIMIT = 120

# File-search markers such as "【4:0†source】" or "【12†notes.pdf】". Only bracketed text with
# a dagger or a bare index counts, so ordinary 【…】 brackets in CJK text survive.
_RAW_MARKER = re.compile(r"[ \t]*【(?:[^【】\n]{0,200}†[^【】\n]{0,200}|\d+(?::\d+)*)】")
# Private-use placeholders keep our references apart from text like "x[1][1]" in code.
_REF = "\ue000{}\ue001"
_REPEATED_REF = re.compile(r"(\ue000(\d+)\ue001)(?:[ \t]*\ue000\2\ue001)+")
_ANY_REF = re.compile(r"\ue000(\d+)\ue001")


def _source_line(number: int, citation: Citation) -> str:
    line = f"- [{number}] {escape_markdown(citation.filename.strip() or 'untitled file')}"
    quote = " ".join((citation.quote or "").split())
    if quote:
        line += f" — “{escape_markdown(truncate(quote, QUOTE_LIMIT))}”"
    return line


def _position(text: str, citation: Citation) -> int:
    found = text.find(citation.marker) if citation.marker else -1
    return found if found >= 0 else len(text) + 1


def apply_citations(messages: Sequence[AssistantMessage]) -> tuple[str, str]:
    """Join the messages' text with footnote references; return (body, sources section).

    Sources are numbered in order of first appearance and deduplicated by file (file id,
    else filename); the first quote seen for a file is kept. Markers with no citation
    object are removed. The sources section is "" when nothing was cited.
    """
    numbers: dict[str, int] = {}
    sources: list[str] = []
    parts: list[str] = []
    for message in messages:
        text = message.text
        for citation in sorted(message.citations, key=partial(_position, text)):
            key = citation.file_id or citation.filename
            number = numbers.get(key)
            if number is None:
                number = numbers[key] = len(numbers) + 1
                sources.append(_source_line(number, citation))
            if citation.marker:
                text = text.replace(citation.marker, _REF.format(number))
        text = _RAW_MARKER.sub("", text)
        text = _REPEATED_REF.sub(r"\1", text)
        text = _ANY_REF.sub(r"[\1]", text).strip()
        if text:
            parts.append(text)
    body = "\n\n".join(parts)
    section = "**Sources**\n" + "\n".join(sources) if sources else ""
    return body, section
