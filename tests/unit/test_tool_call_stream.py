"""Streamed tool calls put back together, as each kind of server sends them."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionChunk

from bot.runtime._tool_call_stream import (
    StreamedToolCall,
    ToolCallAccumulator,
    arguments_parse,
    parse_arguments,
    replayable_arguments,
)


def chunk(*tool_calls: dict) -> ChatCompletionChunk:
    """A chunk as the SDK builds it from the wire (no validation, like the SDK)."""
    return ChatCompletionChunk.construct(
        id="chatcmpl-1",
        object="chat.completion.chunk",
        created=0,
        model="m",
        choices=[{"index": 0, "delta": {"tool_calls": list(tool_calls)}, "finish_reason": None}],
    )


def head(index, call_id, name, arguments=""):
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def more(index, fragment, call_id=None):
    delta = {"index": index, "function": {"arguments": fragment}}
    if call_id is not None:
        delta["id"] = call_id
    return delta


def whole(call_id, name, arguments, index=0):
    return head(index, call_id, name, arguments)


def no_index(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


Q = "display_quiz"


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(
            [[head(0, "call_1", Q)], [more(0, '{"title"')], [more(0, ': "x"}')]],
            [("call_1", Q, '{"title": "x"}')],
            id="openai: head then fragments",
        ),
        pytest.param(
            [
                [head(0, "chatcmpl-tool-a", Q)],
                [more(0, '{"a":', call_id="")],
                [head(1, "chatcmpl-tool-b", "lookup")],
                [more(0, " 1}", call_id="")],
                [more(1, '{"b": 2}', call_id="")],
            ],
            [("chatcmpl-tool-a", Q, '{"a": 1}'), ("chatcmpl-tool-b", "lookup", '{"b": 2}')],
            id="vllm: empty-string ids on continuations, interleaved indices",
        ),
        pytest.param(
            [[whole("call_x", Q, '{"a": 1}')], [whole("call_y", Q, '{"a": 2}')]],
            [("call_x", Q, '{"a": 1}'), ("call_y", Q, '{"a": 2}')],
            id="ollama: every call index 0, whole, own id",
        ),
        pytest.param(
            [[whole("call_x", Q, '{"a": 1}'), whole("call_y", "lookup", "{}")]],
            [("call_x", Q, '{"a": 1}'), ("call_y", "lookup", "{}")],
            id="ollama: two calls in one chunk, both index 0",
        ),
        pytest.param(
            [[no_index("call_x", Q, "{}")], [no_index("call_y", Q, '{"b": 1}')]],
            [("call_x", Q, "{}"), ("call_y", Q, '{"b": 1}')],
            id="old ollama: no index at all",
        ),
        pytest.param(
            [[head(0, "call_1", Q, '{"a": 1}')]],
            [("call_1", Q, '{"a": 1}')],
            id="a whole call in one delta",
        ),
        pytest.param(
            [[head(0, None, Q)], [more(0, '{"a"')], [more(0, ": 1}")]],
            [("call_P_0", Q, '{"a": 1}')],
            id="no id: one is made up",
        ),
        pytest.param(
            [[head(0, None, Q, '{"a": 1}')], [head(0, None, Q, '{"a": 2}')]],
            [("call_P_0", Q, '{"a": 1}'), ("call_P_1", Q, '{"a": 2}')],
            id="no ids, same index: a name after complete arguments is a new call",
        ),
        pytest.param(
            [[head(0, None, Q)], [head(0, None, Q, '{"a"')], [head(0, None, Q, ": 1}")]],
            [("call_P_0", Q, '{"a": 1}')],
            id="no ids, name repeated on every delta of one call",
        ),
        pytest.param(
            [[head(0, "call_1", Q, "{}")], [head(0, "call_1", Q)]],
            [("call_1", Q, "{}")],
            id="a repeated header adds nothing",
        ),
        pytest.param(
            [[head(0, "", Q)], [more(0, "{}", call_id="call_late")]],
            [("call_late", Q, "{}")],
            id="the id arrives after the name",
        ),
        pytest.param(
            [[head(0, "call_1", Q)], [more(0, '{"a": ')]],
            [("call_1", Q, '{"a": ')],
            id="malformed arguments are passed on as they came",
        ),
        pytest.param([[{"index": 0}]], [], id="a delta naming nothing is no call"),
        pytest.param([], [], id="no tool calls"),
    ],
)
def test_calls_are_put_back_together(chunks, expected):
    acc = ToolCallAccumulator(id_prefix="P")
    for tool_calls in chunks:
        acc.feed(chunk(*tool_calls).choices[0].delta.tool_calls)
    assert acc.calls == [StreamedToolCall(*call) for call in expected]
    assert bool(acc) == bool(expected)


def test_chunks_without_tool_calls_are_ignored():
    acc = ToolCallAccumulator()
    acc.feed(None)
    acc.feed([])
    assert acc.calls == []


def test_made_up_ids_are_stable_and_unique_per_accumulator():
    first, second = ToolCallAccumulator(), ToolCallAccumulator()
    for acc in (first, second):
        acc.feed(chunk(head(0, None, Q, "{}")).choices[0].delta.tool_calls)
    assert first.calls == first.calls
    assert first.calls[0].id != second.calls[0].id
    assert first.calls[0].id.startswith("call_")


@pytest.mark.parametrize(
    ("raw", "parsed", "replayed"),
    [
        ('{"a": 1}', {"a": 1}, '{"a": 1}'),
        ("", {}, "{}"),
        ("  ", {}, "{}"),
        ("{}", {}, "{}"),
        ('{"a": ', None, "{}"),
        ("[1, 2]", None, "{}"),
        ('"text"', None, "{}"),
        ("{'a': 1}", None, "{}"),
        ('{"a": 1}{"b": 2}', None, "{}"),
    ],
)
def test_arguments(raw, parsed, replayed):
    assert parse_arguments(raw) == parsed
    assert arguments_parse(raw) is (parsed is not None)
    assert replayable_arguments(raw) == replayed
