"""The fake Chat Completions server, exercised through the real openai SDK (both flavours)."""

from __future__ import annotations

import json

import openai
import pytest

from bot.runtime._tool_call_stream import ToolCallAccumulator
from tests.fakes.openai_server import CodeCall, FakeOpenAI, FunctionCall, ModelContext, Reply

MODEL = "qwen2.5-7b-instruct"
QUIZ_TOOL = {
    "type": "function",
    "function": {
        "name": "display_quiz",
        "description": "Show a quiz",
        "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
    },
}
SYSTEM = {"role": "system", "content": "You are a tutor."}


@pytest.fixture
async def fake():
    f = FakeOpenAI()
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
async def client(fake):
    c = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    yield c
    await c.close()


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


def text_of(chunks) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def two_calls() -> list[FunctionCall]:
    return [
        FunctionCall("display_quiz", '{"title": "Fractions", "n": 2}', call_id="call_a"),
        FunctionCall("display_quiz", '{"title": "Decimals"}', call_id="call_b"),
    ]


def answered(calls: list[dict], outputs: dict[str, str]) -> list[dict]:
    """The messages a client sends back after the model called ``calls``."""
    return [
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": cid, "content": out} for cid, out in outputs.items()),
    ]


def wire_call(call_id: str, name: str = "display_quiz", arguments: str = "{}") -> dict:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


# --- streamed text -----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["vllm", "ollama"])
async def test_streamed_text_arrives_in_pieces_and_ends(fake, client, flavour):
    fake.chat.flavour = flavour
    answer = "A fraction is a part of a whole, written as one number over another."
    fake.model.push(Reply(text=answer, latency=0.05))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, {"role": "user", "content": "What is a fraction?"}],
        stream=True,
    )
    chunks = await collect(stream)

    assert text_of(chunks) == answer
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
    assert all(c.usage is None for c in chunks)

    ctx = fake.model.calls[0]
    assert ctx.protocol == "chat" and ctx.model == MODEL
    assert ctx.instructions == "You are a tutor."
    assert ctx.last_user_text == "What is a fraction?"
    assert ctx.history == [{"role": "user", "text": "What is a fraction?"}]
    assert fake.user_messages() == ["What is a fraction?"]
    assert fake.chat.requests[0]["messages"][1]["content"] == "What is a fraction?"
    assert fake.chat.busy() == [] and fake.violations == []


async def test_usage_chunk_comes_last_when_asked(fake, client):
    fake.model.push(Reply(text="Four."))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "2+2?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = await collect(stream)
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in answer)
    assert text_of(answer) == "Four."


# --- streamed tool calls -----------------------------------------------------------------------


async def test_vllm_streams_each_call_as_a_head_then_argument_fragments(fake, client):
    fake.chat.flavour = "vllm"
    fake.chat.max_chunks = 4
    fake.model.push(Reply(text="Let me quiz you.", function_calls=two_calls()))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "quiz me"}],
        tools=[QUIZ_TOOL],
        stream=True,
    )
    chunks = await collect(stream)
    deltas = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]

    heads = [d for d in deltas if d.id]
    assert [(d.index, d.id, d.type, d.function.name, d.function.arguments) for d in heads] == [
        (0, "call_a", "function", "display_quiz", ""),
        (1, "call_b", "function", "display_quiz", ""),
    ]
    continuations = [d for d in deltas if not d.id]
    assert continuations and all(d.id == "" for d in continuations)
    assert all(d.function.name is None and d.type is None for d in continuations)
    for index, call in enumerate(two_calls()):
        fragments = [d.function.arguments for d in continuations if d.index == index]
        assert len(fragments) > 1 and "".join(fragments) == call.arguments
    assert text_of(chunks) == "Let me quiz you."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_ollama_sends_every_call_whole_at_index_zero(fake, client):
    fake.chat.flavour = "ollama"
    fake.model.push(
        Reply(function_calls=[FunctionCall("display_quiz", '{"title": "x"}'), *two_calls()])
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "quiz me"}],
        tools=[QUIZ_TOOL],
        stream=True,
    )
    chunks = await collect(stream)
    per_chunk = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert [len(calls) for calls in per_chunk] == [1, 1, 1]
    calls = [calls[0] for calls in per_chunk]
    assert [c.index for c in calls] == [0, 0, 0]
    assert len({c.id for c in calls}) == 3 and calls[0].id.startswith("call_")
    assert [c.id for c in calls[1:]] == ["call_a", "call_b"]
    assert [c.function.arguments for c in calls] == [
        '{"title": "x"}',
        *(fc.arguments for fc in two_calls()),
    ]
    assert all(c.choices[0].delta.role == "assistant" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[0].system_fingerprint == "fp_ollama"


# --- not streamed --------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["vllm", "ollama"])
async def test_not_streamed_answers_one_completion(fake, client, flavour):
    fake.chat.flavour = flavour
    fake.model.push(Reply(text="Here is a quiz.", function_calls=two_calls()), Reply(text="Hi!"))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "quiz me"}], tools=[QUIZ_TOOL]
    )
    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Here is a quiz."
    assert [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        (fc.call_id, fc.name, fc.arguments) for fc in two_calls()
    ]
    assert completion.usage.completion_tokens > 0

    plain = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello"}]
    )
    assert plain.choices[0].message.content == "Hi!"
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].finish_reason == "stop"


async def test_incomplete_reply_finishes_with_length(fake, client):
    fake.model.push(Reply(text="The answer is", status="incomplete"))
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "long question"}]
    )
    assert completion.choices[0].finish_reason == "length"


# --- the conversation the model sees -----------------------------------------------------------


async def test_tool_round_trip_the_model_sees_the_outputs(fake, client):
    def feedback(ctx: ModelContext) -> Reply:
        outputs = {o["call_id"]: json.loads(o["output"]) for o in ctx.tool_outputs}
        return Reply(text=f"You answered {outputs['call_a']} and {outputs['call_b']}.")

    fake.model.push(Reply(function_calls=two_calls()), feedback)
    first = [SYSTEM, {"role": "user", "content": "quiz me"}]
    completion = await client.chat.completions.create(
        model=MODEL, messages=first, tools=[QUIZ_TOOL]
    )
    calls = [c.model_dump(exclude_none=True) for c in completion.choices[0].message.tool_calls]
    messages = first + answered(calls, {"call_a": '["1/2"]', "call_b": '["0.5"]'})
    again = await client.chat.completions.create(model=MODEL, messages=messages, tools=[QUIZ_TOOL])
    assert again.choices[0].message.content == "You answered ['1/2'] and ['0.5']."

    ctx = fake.model.calls[1]
    assert ctx.last_user_text == "quiz me"
    assert [h.get("type") or h["role"] for h in ctx.history] == [
        "user",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert ctx.thread_id == fake.model.calls[0].thread_id  # one conversation

    # The same request sent again (a retry) records nothing twice.
    fake.model.push(Reply(text="again"))
    await client.chat.completions.create(model=MODEL, messages=messages, tools=[QUIZ_TOOL])
    assert [o["call_id"] for o in fake.tool_outputs()] == ["call_a", "call_b"]
    assert {o["protocol"] for o in fake.tool_outputs()} == {"chat"}
    assert fake.user_messages() == ["quiz me"]
    assert fake.violations == []


async def test_conversations_are_told_apart(fake, client):
    for question in ("first thread", "second thread"):
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}]
        )
    await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "first thread"},
            {"role": "assistant", "content": "Echo: first thread"},
            {"role": "user", "content": "more"},
        ],
    )
    await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "anything"}],
        prompt_cache_key="T1:1.0",
    )
    ids = [ctx.thread_id for ctx in fake.model.calls]
    assert ids[0] != ids[1] and ids[2] == ids[0] and ids[3] == "T1:1.0"
    assert fake.user_messages(ids[0]) == ["first thread", "more"]
    assert fake.max_concurrent[ids[0]] == 1


# --- validation ----------------------------------------------------------------------------

CALLS = [wire_call("call_1"), wire_call("call_2")]
USER = {"role": "user", "content": "quiz me"}
STRING = {"type": "string"}

MISSING_OUTPUT = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to "
    "each 'tool_call_id'. The following tool_call_ids did not have response messages: call_2"
)
UNKNOWN_OUTPUT = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
    "with 'tool_calls'."
)


@pytest.mark.parametrize(
    ("flavour", "request_", "message"),
    [
        ("vllm", {"messages": []}, "Invalid 'messages': empty array."),
        ("vllm", {}, "Missing required parameter: 'messages'."),
        (
            "vllm",
            {"messages": [USER, *answered(CALLS, {"call_1": "ok"})]},
            MISSING_OUTPUT,
        ),
        (
            "ollama",
            {
                "messages": [
                    USER,
                    *answered(CALLS, {"call_1": "ok"}),
                    {"role": "user", "content": "next"},
                ]
            },
            MISSING_OUTPUT,
        ),
        (
            "vllm",
            {"messages": [USER, *answered(CALLS, {"call_1": "ok", "call_2": "ok", "call_9": "?"})]},
            UNKNOWN_OUTPUT,
        ),
        (
            "vllm",
            {"messages": [USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
            UNKNOWN_OUTPUT,
        ),
        (
            "vllm",
            {"messages": [USER, *answered(CALLS, {"call_2": "b", "call_1": "a"})]},
            None,  # answers in any order
        ),
        (
            "vllm",
            {"messages": [USER], "tools": [{"type": "code_interpreter"}]},
            "Invalid value: 'code_interpreter'. Supported values are: 'function' and 'custom'.",
        ),
        (
            "vllm",
            {"messages": [USER], "tools": [{"type": "function", "function": {"name": "a b"}}]},
            "Invalid 'tools[0].function.name': string does not match pattern.",
        ),
        (
            "vllm",
            {
                "messages": [USER],
                "tools": [{"type": "function", "function": {"name": "q", "parameters": STRING}}],
            },
            "Invalid schema for function 'q'",
        ),
        ("vllm", {"messages": [USER], "tools": []}, "Invalid 'tools': empty array."),
        ("vllm", {"messages": [USER], "tool_choice": "auto"}, "'tool_choice' is only allowed"),
        ("vllm", {"messages": [{"role": "bot", "content": "x"}]}, "Invalid value: 'bot'."),
        ("vllm", {"messages": [{"role": "assistant"}]}, "expected a string, got null"),
        (
            "vllm",
            {"messages": [USER, *answered([wire_call("c", arguments='{"t": ')], {"c": "x"})]},
            "Expecting value",
        ),
        (
            "ollama",
            {"messages": [USER, *answered([wire_call("c", arguments="{'t': 1}")], {"c": "x"})]},
            "invalid tool call arguments",
        ),
        (
            "vllm",
            {"messages": [USER], "stream_options": {"include_usage": True}},
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
    ],
)
async def test_requests_are_checked_like_the_real_servers(fake, flavour, request_, message):
    fake.chat.flavour = flavour
    body = {"model": MODEL, **request_}
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="sk-test", max_retries=0
    ) as client:
        if message is None:
            await client.post("/chat/completions", body=body, cast_to=object)
            assert fake.violations == []
            return
        with pytest.raises(openai.BadRequestError) as exc:
            await client.post("/chat/completions", body=body, cast_to=object)
    assert message in exc.value.message
    assert exc.value.type == "invalid_request_error"
    assert len(fake.violations) == 1 and message in fake.violations[0]
    assert fake.model.calls == []  # a rejected request never reaches the model
    fake.violations.clear()


async def test_empty_arguments_in_history_are_accepted(fake, client):
    messages = [USER, *answered([wire_call("c", arguments="")], {"c": "done"})]
    await client.chat.completions.create(model=MODEL, messages=messages)
    assert fake.violations == []


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text="x", code=[CodeCall("print(1)")]),
        Reply(text="x", status="expired"),
    ],
)
async def test_what_chat_servers_cannot_do_is_a_test_setup_error(fake, client, reply):
    fake.model.push(reply)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=[USER])
    assert len(fake.violations) == 1 and fake.violations[0].startswith("test setup:")
    fake.violations.clear()


# --- faults ----------------------------------------------------------------------------------


async def test_fail_next_answers_the_error_and_the_sdk_retries(fake):
    fake.fail_next("/chat/completions", status=429, retry_after=0.01)
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test") as client:
        stream = await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
        assert text_of(await collect(stream)) == "Echo: quiz me"
    assert [r.status for r in fake.requests] == [429, 200]
    assert len(fake.model.calls) == 1


async def test_hang_next_applies_to_chat(fake):
    fake.hang_next("/chat/completions", 30)
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=0.2
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
    assert fake.model.calls == []


async def test_fail_after_processing_cuts_a_stream_halfway(fake, client):
    fake.model.push(Reply(text="This answer never arrives whole, the server dies mid-way."))
    fake.fail_next("/chat/completions", status=500, after_processing=True)
    stream = await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)
    assert received and not any(c.choices[0].finish_reason for c in received)
    assert len(fake.model.calls) == 1  # the model turn was spent


async def test_fail_after_processing_without_stream_loses_the_answer(fake, client):
    fake.fail_next("/chat/completions", status=500, after_processing=True)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=[USER])
    assert len(fake.model.calls) == 1


async def test_in_band_error_and_failed_model_raise_while_reading(fake, client):
    fake.chat.break_next_stream(after_chunks=2, how="error")
    fake.model.push(Reply(text="a long enough answer to have several chunks"), Reply(fail="oops"))
    for _ in range(2):
        stream = await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
        with pytest.raises(openai.APIError):
            await collect(stream)
    with pytest.raises(openai.InternalServerError):  # not streamed: an HTTP 500
        fake.model.push(Reply(fail="oops"))
        await client.chat.completions.create(model=MODEL, messages=[USER])


async def test_a_stalled_stream_times_out_the_reader(fake):
    fake.chat.break_next_stream(after_chunks=1, how="stall", seconds=30)
    async with openai.AsyncOpenAI(
        base_url=fake.base_url, api_key="sk-test", max_retries=0, timeout=0.3
    ) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
        received = []
        with pytest.raises(openai.APITimeoutError):
            async for chunk in stream:
                received.append(chunk)
    assert len(received) == 1


async def test_a_client_leaving_mid_stream_is_noticed(fake, client):
    fake.chat.chunk_interval = 0.05
    fake.model.push(Reply(text="word " * 100))
    stream = await client.chat.completions.create(model=MODEL, messages=[USER], stream=True)
    first = await stream.__anext__()
    await stream.close()
    await fake.wait_idle(timeout=10)
    assert fake.chat.aborted == [first.id]


@pytest.mark.parametrize("flavour", ["vllm", "ollama"])
async def test_the_bots_accumulator_reads_both_flavours(fake, client, flavour):
    fake.chat.flavour = flavour
    fake.chat.max_chunks = 6
    sent = [*two_calls(), FunctionCall("display_quiz", '{"title": "Percentages", "n": 10}')]
    fake.model.push(Reply(function_calls=sent))
    stream = await client.chat.completions.create(
        model=MODEL, messages=[USER], tools=[QUIZ_TOOL], stream=True
    )
    acc = ToolCallAccumulator()
    async for chunk in stream:
        acc.feed(chunk.choices[0].delta.tool_calls if chunk.choices else None)
    got = acc.calls
    assert [(c.name, c.arguments) for c in got] == [(fc.name, fc.arguments) for fc in sent]
    assert [c.id for c in got[:2]] == ["call_a", "call_b"] and got[2].id
