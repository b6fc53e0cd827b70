"""What the chat runtime asks a server for: instructions, tools and the extra fields it risks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

import openai
import pytest

from bot.runtime.chat import NO_CODE, ChatRuntime, document_id
from store import SqlStore
from store.base import ChatRecord


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., ChatRuntime]]:
    made: list[ChatRuntime] = []

    def runtime(
        base_url: str | None = "http://127.0.0.1:8000/v1",
        tools: Sequence[str] = ("code_interpreter", "file_search", "display_quiz"),
    ) -> ChatRuntime:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=base_url)
        made.append(
            ChatRuntime(
                client,
                SqlStore.sqlite(":memory:"),
                model="qwen2.5-7b-instruct",
                instructions="You are a tutor.",
                tools=tools,
                history_tokens=12_000,
                base_url=base_url,
            )
        )
        return made[-1]

    yield runtime
    for runtime_ in made:
        await runtime_.aclose()


HISTORY = [ChatRecord("chatrun_1", {"role": "user", "content": "hi"})]


async def test_the_request_has_the_instructions_and_only_the_quiz_tool(
    make: Callable[..., ChatRuntime],
) -> None:
    body = make().request(HISTORY, "chat_abc")
    assert body["model"] == "qwen2.5-7b-instruct"
    assert body["messages"] == [
        {"role": "system", "content": f"You are a tutor.\n\n{NO_CODE}"},
        {"role": "user", "content": "hi"},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["display_quiz"]
    assert body["tools"][0]["function"]["parameters"]["required"] == ["title", "questions"]


async def test_without_the_quiz_there_are_no_tools_at_all(make: Callable[..., ChatRuntime]) -> None:
    # An empty "tools" array is a 400 at OpenAI.
    assert "tools" not in make(tools=("code_interpreter",)).request(HISTORY, "chat_abc")


@pytest.mark.parametrize(
    ("base_url", "sent"),
    [
        (None, True),
        ("https://api.openai.com/v1", True),
        ("http://127.0.0.1:8000/v1", False),  # vLLM before 0.6.4 refuses unknown fields
        ("http://localhost:11434/v1", False),
        ("https://litellm.school.example/v1", False),
    ],
)
async def test_prompt_cache_key_only_for_openai(
    make: Callable[..., ChatRuntime], base_url: str | None, sent: bool
) -> None:
    body = make(base_url=base_url).request(HISTORY, "chat_abc")
    assert body.get("prompt_cache_key") == ("chat_abc" if sent else None)


def test_document_ids_follow_name_and_content() -> None:
    same = document_id("a.pdf", b"%PDF-1.4 x")
    assert same == document_id("a.pdf", b"%PDF-1.4 x")
    assert same.startswith("doc_") and len(same) == 36
    assert same != document_id("b.pdf", b"%PDF-1.4 x")
    assert same != document_id("a.pdf", b"%PDF-1.4 y")
