"""Table tests for bot.rendering: splitting, citations, Show work, escaping, small texts."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from bot.rendering import (
    MARKDOWN_LIMIT,
    NO_ANSWER,
    SlackMessage,
    error_text,
    escape_mrkdwn,
    fallback_text,
    progress_text,
    render_answer,
    render_markdown,
    render_work,
    split_markdown,
    truncate,
)
from bot.runtime.base import AssistantMessage, Citation, CodeStep, GeneratedFile

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def unclosed_fence(chunk: str) -> str | None:
    """The fence left open at the end of ``chunk`` (None when every fence is closed)."""
    open_fence: str | None = None
    for line in chunk.split("\n"):
        match = FENCE.match(line)
        if not match:
            continue
        fence, info = match[1], match[2]
        if fence[0] == "`" and "`" in info:  # inline code, not a fence
            continue
        if open_fence is None:
            open_fence = fence
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not info.strip():
            open_fence = None
    return open_fence


def fenced_bodies(chunk: str, opener: str, closer: str) -> list[str]:
    """The bodies of the top-level code blocks in ``chunk`` opened exactly by ``opener``."""
    bodies: list[str] = []
    current: list[str] | None = None
    for line in chunk.split("\n"):
        if current is None and line == opener:
            current = []
        elif current is not None and line == closer:
            bodies.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    assert current is None
    return bodies


def markdown_of(message: SlackMessage) -> str:
    assert len(message.blocks) == 1
    block = message.blocks[0]
    assert block["type"] == "markdown"
    return str(block["text"])


# --- split_markdown ---------------------------------------------------------------------

LIMIT = 1_000


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("", []),
        ("\n\n  \n", []),
        ("Hello **world**", ["Hello **world**"]),
        ("\n\nkeeps inner\n\n\nspacing\n", ["keeps inner\n\n\nspacing"]),
        ("x" * LIMIT, ["x" * LIMIT]),
        ("```py\nx = 1", ["```py\nx = 1\n```"]),
    ],
    ids=["empty", "blank", "short", "short-untouched", "exactly-at-limit", "closes-open-fence"],
)
def test_split_markdown_short(markdown: str, expected: list[str]) -> None:
    assert split_markdown(markdown, LIMIT) == expected


@pytest.mark.parametrize(
    ("markdown", "min_chunks"),
    [
        ("x" * (LIMIT + 1), 2),
        ("\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(12)), 8),
        ("one long line " * 500, 7),
        ("y" * (LIMIT * 3 + 7), 4),
        ("\n".join(f"line {i} " + "z" * 60 for i in range(100)), 7),
    ],
    ids=["limit-plus-one", "paragraphs", "line-longer-than-limit", "no-spaces", "many-lines"],
)
def test_split_markdown_long_text(markdown: str, min_chunks: int) -> None:
    chunks = split_markdown(markdown, LIMIT)

    assert len(chunks) >= min_chunks
    assert all(0 < len(chunk) <= LIMIT for chunk in chunks)
    # Nothing but whitespace is lost or added.
    assert "".join("".join(chunks).split()) == "".join(markdown.split())


def test_split_markdown_keeps_paragraphs_whole() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 50 for i in range(30)]

    chunks = split_markdown("\n\n".join(paragraphs), LIMIT)

    assert len(chunks) > 1
    assert [p for chunk in chunks for p in chunk.split("\n\n")] == [p for p in paragraphs]


@pytest.mark.parametrize(
    ("fence", "language", "limit", "body_lines"),
    [
        (
            "```",
            "python",
            MARKDOWN_LIMIT,
            [f"value_{i} = compute({i})  # step {i}" for i in range(900)],
        ),
        ("```", "", LIMIT, [f"row {i}" for i in range(400)]),
        ("~~~", "sql", LIMIT, [f"SELECT {i};" for i in range(300)]),
        ("````", "markdown", LIMIT, ["```python", "print('inner fence')", "```", *["text"] * 400]),
        ("```", "python", LIMIT, ["a = 1", "s = '" + "q" * 2_500 + "'", "", "b = 2"]),
    ],
    ids=["30k-python", "no-language", "tilde", "nested-backticks", "code-line-longer-than-limit"],
)
def test_split_markdown_code_block(
    fence: str, language: str, limit: int, body_lines: list[str]
) -> None:
    body = "\n".join(body_lines)
    markdown = f"Here is the code:\n\n{fence}{language}\n{body}\n{fence}\n\nThat's all."

    chunks = split_markdown(markdown, limit)

    assert len(chunks) >= 3
    bodies: list[str] = []
    for chunk in chunks:
        assert len(chunk) <= limit
        assert unclosed_fence(chunk) is None, chunk[-200:]
        found = fenced_bodies(chunk, f"{fence}{language}", fence)
        assert len(found) == 1
        bodies += found
    # Only line breaks are added, where an over-long line had to be cut.
    assert "".join(bodies).replace("\n", "") == body.replace("\n", "")
    assert chunks[0].startswith(f"Here is the code:\n\n{fence}{language}\n")
    assert chunks[-1].endswith("That's all.")


def test_split_markdown_30k_code_block_in_slack_limit() -> None:
    body = "\n".join(f"print('line {i:05d}')" + " " * 10 for i in range(1_000))
    markdown = f"```python\n{body}\n```"
    assert len(markdown) > 30_000

    chunks = split_markdown(markdown, MARKDOWN_LIMIT)

    assert len(chunks) == 3
    for chunk in chunks:
        assert len(chunk) <= MARKDOWN_LIMIT
        assert chunk.startswith("```python\n")
        assert chunk.endswith("\n```")
        assert unclosed_fence(chunk) is None
    assert "\n".join(fenced_bodies(c, "```python", "```")[0] for c in chunks) == body


def test_split_markdown_closes_an_unclosed_fence() -> None:
    markdown = "```js\n" + "\n".join(f"console.log({i});" for i in range(200))

    chunks = split_markdown(markdown, LIMIT)

    assert len(chunks) > 1
    assert all(unclosed_fence(c) is None and c.startswith("```js\n") for c in chunks)


def test_split_markdown_repeats_table_header() -> None:
    header = "| n | square |\n|---|---|"
    rows = [f"| {i} | {i * i} |" for i in range(200)]

    chunks = split_markdown(header + "\n" + "\n".join(rows), LIMIT)

    assert len(chunks) > 1
    assert all(c.startswith(header + "\n| ") and len(c) <= LIMIT for c in chunks)
    assert [r for c in chunks for r in c.split("\n")[2:]] == rows


def _random_markdown(rng: random.Random) -> str:
    def words(n: int) -> str:
        return " ".join(
            "".join(rng.choices("abcdef*_`[]<>|", k=rng.randint(1, 12))) for _ in range(n)
        )

    parts = []
    for _ in range(rng.randint(1, 25)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(words(rng.randint(1, 400)))
        elif kind < 0.7:
            fence, language = rng.choice(["```", "~~~", "````"]), rng.choice(["", "python"])
            body = "\n".join(words(rng.randint(0, 20)).replace("`", "") for _ in range(200))
            parts.append(f"{fence}{language}\n{body}\n{fence}")
        elif kind < 0.85:
            rows = "\n".join(f"| {words(1)} | {words(2)} |" for _ in range(rng.randint(1, 200)))
            parts.append("| a | b |\n|---|---|\n" + rows)
        else:
            parts.append("\n".join(words(1) for _ in range(rng.randint(1, 200))))
    if rng.random() < 0.2:
        parts.append("```python\nnever closed\n" + "y = 1\n" * 400)
    return "\n\n".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_split_markdown_random_documents(seed: int) -> None:
    rng = random.Random(seed)
    markdown = _random_markdown(rng)
    limit = rng.choice([300, 1_000, MARKDOWN_LIMIT])

    chunks = split_markdown(markdown, limit)

    assert chunks
    for chunk in chunks:
        assert 0 < len(chunk) <= limit
        assert unclosed_fence(chunk) is None


def test_split_markdown_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_markdown("text", 10)


# --- render_answer ---------------------------------------------------------------------

MARK = "【4:0†source】"
MARK2 = "【4:1†source】"
NOTES = Citation(marker=MARK, filename="notes.pdf", file_id="file-1", quote="The mean is the sum.")


@pytest.mark.parametrize(
    ("messages", "body", "sources"),
    [
        (
            [AssistantMessage(f"The mean is 5 {MARK}.", [NOTES])],
            "The mean is 5 [1].",
            ["- [1] notes.pdf — “The mean is the sum.”"],
        ),
        (
            [
                AssistantMessage(
                    f"Mean {MARK}. Median {MARK2}.",
                    [NOTES, dataclasses.replace(NOTES, marker=MARK2, quote="other")],
                )
            ],
            "Mean [1]. Median [1].",
            ["- [1] notes.pdf — “The mean is the sum.”"],
        ),
        (
            [
                AssistantMessage(
                    f"Mean{MARK}{MARK2}.", [NOTES, dataclasses.replace(NOTES, marker=MARK2)]
                )
            ],
            "Mean[1].",
            ["- [1] notes.pdf — “The mean is the sum.”"],
        ),
        (
            [
                AssistantMessage(
                    f"First {MARK2} then {MARK}.",
                    [NOTES, Citation(marker=MARK2, filename="data.csv", file_id="file-2")],
                )
            ],
            "First [1] then [2].",
            ["- [1] data.csv", "- [2] notes.pdf — “The mean is the sum.”"],
        ),
        (
            [
                AssistantMessage(f"One {MARK}.", [NOTES]),
                AssistantMessage(f"Two {MARK}.", [NOTES]),
            ],
            "One [1].\n\nTwo [1].",
            ["- [1] notes.pdf — “The mean is the sum.”"],
        ),
        (
            [AssistantMessage("The mean is 5 【7:2†source】. See 【3†lecture.pdf】 and 【12】.")],
            "The mean is 5. See and.",
            [],
        ),
        (
            [AssistantMessage("Keep 【注意】 and `x[1][1]` as written.")],
            "Keep 【注意】 and `x[1][1]` as written.",
            [],
        ),
        (
            [AssistantMessage("No marker.", [Citation(marker="", filename="week_3*.pdf")])],
            "No marker.",
            ["- [1] week_3\\*.pdf"],
        ),
    ],
    ids=[
        "one",
        "same-file-twice",
        "adjacent-same-file",
        "numbered-by-appearance",
        "across-messages",
        "unknown-markers-stripped",
        "other-brackets-kept",
        "citation-without-marker",
    ],
)
def test_render_answer_citations(
    messages: list[AssistantMessage], body: str, sources: list[str]
) -> None:
    [message] = render_answer(messages)

    expected = body + ("\n\n**Sources**\n" + "\n".join(sources) if sources else "")
    assert markdown_of(message) == expected
    assert "【4" not in message.text
    assert message.text == fallback_text(expected)


def test_render_answer_shortens_quotes() -> None:
    citation = dataclasses.replace(NOTES, quote="word " * 100)

    [message] = render_answer([AssistantMessage(f"x {MARK}", [citation])])

    quote = markdown_of(message).split("“")[1].rstrip("”")
    assert len(quote) <= 120
    assert quote.endswith("…")


@pytest.mark.parametrize(
    "messages",
    [[], [AssistantMessage("")], [AssistantMessage("  \n ")], [AssistantMessage(MARK)]],
    ids=["no-messages", "empty-text", "whitespace", "only-a-marker"],
)
def test_render_answer_empty(messages: list[AssistantMessage]) -> None:
    assert render_answer(messages) == [
        SlackMessage(text=NO_ANSWER, blocks=[{"type": "markdown", "text": NO_ANSWER}])
    ]


def test_render_answer_long_answer_splits_into_messages() -> None:
    text = "\n\n".join(f"Paragraph {i} {MARK}. " + "Lorem ipsum " * 200 for i in range(20))
    messages = render_answer([AssistantMessage(text, [NOTES])])

    assert len(messages) >= 5
    for message in messages:
        assert len(markdown_of(message)) <= MARKDOWN_LIMIT
        assert 0 < len(message.text) <= 3_000
    assert markdown_of(messages[-1]).endswith(
        "**Sources**\n- [1] notes.pdf — “The mean is the sum.”"
    )


def test_render_answer_defuses_slack_tokens() -> None:
    [message] = render_answer(
        [AssistantMessage("Hey <!channel> and <@U123ABC>, see <https://x.org>")]
    )

    md = markdown_of(message)
    assert "<!channel>" not in md and "<@U123ABC>" not in md
    assert "<https://x.org>" in md
    assert "<\u200b!channel>" in md
    assert "<!channel>" not in message.text.replace("&lt;", "<").replace("&gt;", ">")


def test_render_markdown_blank_is_empty() -> None:
    assert render_markdown("  ") == []


def test_slack_message_kwargs() -> None:
    message = SlackMessage(text="hi", blocks=[{"type": "markdown", "text": "hi"}])

    assert message.as_kwargs() == {"text": "hi", "blocks": [{"type": "markdown", "text": "hi"}]}
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.text = "other"  # type: ignore[misc]


# --- render_work -----------------------------------------------------------------------


def test_render_work_no_steps() -> None:
    assert render_work([]) == []


def test_render_work_one_step() -> None:
    step = CodeStep(code="print(2 + 2)", logs="4\n", files=[GeneratedFile("f1", "plot*.png")])

    [message] = render_work([step])

    assert markdown_of(message) == (
        "**Show work** — the code I ran\n\n"
        "**Code**\n```python\nprint(2 + 2)\n```\n_Output_\n```\n4\n```\n_Files:_ plot\\*.png"
    )


@pytest.mark.parametrize(
    ("step", "present", "absent"),
    [
        (CodeStep(code="x = 1"), ["_No output._"], ["_Output_"]),
        (CodeStep(code="", logs="hi"), ["# (no code)", "hi"], []),
        (
            CodeStep(code="run()", logs="A" * 5_000 + "\nValueError: bad input"),
            ["… (truncated) …", "ValueError: bad input"],
            ["A" * 1_500],
        ),
        (CodeStep(code="y = 2\n" * 1_000), ["# … (truncated)"], ["y = 2\n" * 400]),
        (CodeStep(code='s = """\n```\n"""', logs="```"), ["````python\n", "\n````"], []),
    ],
    ids=["no-output", "no-code", "long-logs", "long-code", "code-with-fences"],
)
def test_render_work_step_details(step: CodeStep, present: list[str], absent: list[str]) -> None:
    [message] = render_work([step])
    md = markdown_of(message)

    assert all(text in md for text in present)
    assert not any(text in md for text in absent)
    assert unclosed_fence(md) is None
    assert len(md) < 4_000


def test_render_work_limits_steps_and_never_floods() -> None:
    step = CodeStep(code="x = 1\n" * 1_000, logs="out\n" * 2_000)

    messages = render_work([step] * 7)
    markdown = "\n\n".join(markdown_of(m) for m in messages)

    assert len(messages) <= 2
    assert markdown.count("**Step ") == 3
    assert "**Step 3 of 7**" in markdown
    assert markdown.endswith("_…and 4 more steps._")
    assert all(len(markdown_of(m)) <= MARKDOWN_LIMIT for m in messages)
    assert all(unclosed_fence(markdown_of(m)) is None for m in messages)


def test_render_work_one_hidden_step_is_singular() -> None:
    messages = render_work([CodeStep(code="pass")] * 4)

    assert markdown_of(messages[-1]).endswith("_…and 1 more step._")


# --- progress and errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("", ":hourglass_flowing_sand: Thinking…"),
        ("Writing code…", ":hourglass_flowing_sand: Writing code…"),
        (":mag: Searching your files…", ":mag: Searching your files…"),
        ("a < b", ":hourglass_flowing_sand: a &lt; b"),
    ],
    ids=["default", "label", "own-emoji", "escaped"],
)
def test_progress_text(label: str, text: str) -> None:
    message = progress_text(label)

    assert message.text == text
    assert message.blocks == [{"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}]


def test_progress_text_long_label() -> None:
    assert len(progress_text("x" * 1_000).text) <= 150


@pytest.mark.parametrize(
    ("note", "text"),
    [
        ("", ":warning: Something went wrong. Please try again."),
        ("The model timed out.", ":warning: The model timed out."),
        (
            'Run failed.\nTraceback (most recent call last):\n  File "x.py", line 1\nKeyError: 1',
            ":warning: Run failed.",
        ),
        ("Bad <input> & more", ":warning: Bad &lt;input&gt; &amp; more"),
    ],
    ids=["default", "plain", "traceback-dropped", "escaped"],
)
def test_error_text(note: str, text: str) -> None:
    message = error_text(note)

    assert message.text == text
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_error_text_is_short() -> None:
    text = error_text("&" * 2_000).text

    assert len(text) <= 500
    assert text.endswith("&amp;…")


# --- text helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "suffix", "expected"),
    [
        ("short", 10, "…", "short"),
        ("exactly10!", 10, "…", "exactly10!"),
        ("hello world", 8, "…", "hello w…"),
        ("hello world", 7, "…", "hello…"),
        ("hello world", 8, " (cut)", "he (cut)"),
        ("hello", 0, "…", ""),
        ("hello", 2, "...", ".."),
    ],
)
def test_truncate(text: str, limit: int, suffix: str, expected: str) -> None:
    assert truncate(text, limit, suffix) == expected
    assert len(truncate(text, limit, suffix)) <= max(limit, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a & b", "a &amp; b"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("x > y < z", "x &gt; y &lt; z"),
        ("&amp;", "&amp;amp;"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_escape_mrkdwn(text: str, expected: str) -> None:
    assert escape_mrkdwn(text) == expected


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("", ""),
        ("## Answer\n\nThe **mean** is `5`.", "Answer\n\nThe mean is 5."),
        ("```python\nprint(1)\n```", "print(1)"),
        (
            "See [the docs](https://x.org) and ![plot](a.png)",
            "See the docs (https://x.org) and plot",
        ),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "| a | b |\n| 1 | 2 |"),
        ("a < b & c", "a &lt; b &amp; c"),
        ("file\\*.pdf", "file*.pdf"),
        ("one\n\n\n\ntwo", "one\n\ntwo"),
    ],
    ids=["empty", "heading-bold-code", "fence", "links", "table", "escaped", "backslash", "blanks"],
)
def test_fallback_text(markdown: str, expected: str) -> None:
    assert fallback_text(markdown) == expected


def test_fallback_text_is_bounded() -> None:
    text = fallback_text("a<b " * 2_000)

    assert len(text) <= 3_000
    assert text.endswith("…")
    assert not re.search(r"&[a-z]*…$", text)
